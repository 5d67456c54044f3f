"""Administration (admin role): the tenant's API keys — created (the token shown once, with a
copy button), listed, revoked — and the risk settings (SLA days per severity, the initial state),
through the library the API's /v1/keys and /v1/settings/risks routes call."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Form, Request

from bastion.errors import InvalidValue
from bastion.risks import lifecycle
from bastion.schema import roles
from bastion.schema.kinds import SEVERITIES
from bastion.server.context import Context
from bastion.web.app import console, console_write, csv_response, redirect, render

router = APIRouter()

ADMIN = console(roles.ADMIN)
KEY_COLUMNS = ("id", "name", "role", "state", "created_at", "created_by", "expires_at",
               "revoked_at", "last_used_at")


def _page(request: Request, ctx: Context, created=None, token=None, status_code: int = 200):
    s = lifecycle.risk_settings(ctx.tenant)
    return render(request, ctx, "admin.html", status_code=status_code,
                  keys=[k.as_dict() for k in ctx.tenant.keys.list()], roles=roles.ROLES,
                  sla=s.sla_days, initial=s.initial_status, severities=SEVERITIES,
                  created=created, token=token, saved=request.query_params.get("saved"))


@router.get("/admin")
def admin(request: Request, ctx: Context = Depends(ADMIN)):
    return _page(request, ctx)


@router.get("/admin/keys.csv")
def keys_csv(ctx: Context = Depends(ADMIN)):
    return csv_response("keys.csv", (k.as_dict() for k in ctx.tenant.keys.list()), KEY_COLUMNS)


@router.post("/admin/keys")
def create_key(request: Request, name: str = Form(max_length=200), role: str = Form(),
               expires_in_days: str = Form(default=""),
               ctx: Context = Depends(console_write(roles.ADMIN))):
    expires = None
    if expires_in_days.strip():
        if not expires_in_days.strip().isdigit() or not 1 <= int(expires_in_days) <= 3650:
            raise InvalidValue("expires in: give 1 to 3650 days, or nothing", "expires_in_days")
        expires = datetime.now(timezone.utc) + timedelta(days=int(expires_in_days))
    key, token = ctx.tenant.keys.create(name, role, actor=ctx.actor, source=ctx.source,
                                        expires_at=expires)
    # The token is shown in this answer only (never stored in clear, never in a URL).
    return _page(request, ctx, created=key.as_dict(), token=token, status_code=201)


@router.post("/admin/keys/revoke")
def revoke_key(key_id: str = Form(max_length=200), ctx: Context = Depends(console_write(roles.ADMIN))):
    ctx.tenant.keys.revoke(key_id, actor=ctx.actor, source=ctx.source)
    return redirect("/admin", saved="revoked")


@router.post("/admin/settings")
async def settings(request: Request, ctx: Context = Depends(console_write(roles.ADMIN))):
    form = await request.form()
    sla = {}
    for sev in SEVERITIES:
        raw = str(form.get(f"sla_{sev}", "")).strip()
        if raw:
            if not raw.isdigit():
                raise InvalidValue(f"SLA days for {sev}: {raw!r} is not a whole number of days", sev)
            sla[sev] = int(raw)
    initial = str(form.get("initial_status", "")) or None
    lifecycle.configure(ctx.tenant, sla=sla or None, initial=initial, actor=ctx.actor,
                        source=ctx.source)
    return redirect("/admin", saved="settings")
