"""Administration (admin role): the tenant's API keys and settings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, Field

from bastion.risks import lifecycle
from bastion.server.context import ADMIN, Context
from bastion.server.problems import responses

router = APIRouter(tags=["administration"])


class KeyOut(BaseModel):
    id: str
    name: str
    role: str
    state: Literal["active", "expired", "revoked"]
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class KeyCreated(KeyOut):
    token: str = Field(description="The key itself: shown only now, stored only as a hash")


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "analyst", "uploader", "reader"]
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


@router.get("/keys", response_model=list[KeyOut], summary="The tenant's API keys", responses=responses())
def list_keys(ctx: Context = Depends(ADMIN)) -> list[dict[str, Any]]:
    return [k.as_dict() for k in ctx.tenant.keys.list()]


@router.post("/keys", response_model=KeyCreated, status_code=201, summary="Create an API key",
             responses=responses(409))
def create_key(body: KeyIn = Body(), ctx: Context = Depends(ADMIN)) -> dict[str, Any]:
    expires = (datetime.now(timezone.utc) + timedelta(days=body.expires_in_days)
               if body.expires_in_days else None)
    key, token = ctx.tenant.keys.create(body.name, body.role, actor=ctx.actor, source=ctx.source,
                                        expires_at=expires)
    return {**key.as_dict(), "token": token}


@router.delete("/keys/{name_or_id}", response_model=KeyOut, summary="Revoke an API key",
               responses=responses(404))
def revoke_key(name_or_id: str, ctx: Context = Depends(ADMIN)) -> dict[str, Any]:
    return ctx.tenant.keys.revoke(name_or_id, actor=ctx.actor, source=ctx.source).as_dict()


class RiskSettingsOut(BaseModel):
    sla_days: dict[str, int]
    initial_status: str


class RiskSettingsIn(BaseModel):
    sla_days: dict[Literal["critical", "high", "medium", "low", "info"], int] | None = None
    initial_status: Literal["triage", "open"] | None = None


@router.get("/settings/risks", response_model=RiskSettingsOut, summary="SLA days and the state "
            "new findings start in", responses=responses())
def risk_settings(ctx: Context = Depends(ADMIN)) -> dict[str, Any]:
    s = lifecycle.risk_settings(ctx.tenant)
    return {"sla_days": s.sla_days, "initial_status": s.initial_status}


@router.patch("/settings/risks", response_model=RiskSettingsOut, summary="Change SLA days or the "
              "initial state (an event)", responses=responses())
def set_risk_settings(body: RiskSettingsIn = Body(), ctx: Context = Depends(ADMIN)) -> dict[str, Any]:
    s = lifecycle.configure(ctx.tenant, sla=body.sla_days, initial=body.initial_status,
                            actor=ctx.actor, source=ctx.source)
    return {"sla_days": s.sla_days, "initial_status": s.initial_status}
