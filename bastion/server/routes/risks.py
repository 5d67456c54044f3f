"""Risks: open risks in priority order, what is past its SLA, and an analyst's status change
(with a comment, optionally only on the version read: If-Match), as `bastion risk` does."""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, Header, Query, Response
from pydantic import BaseModel, Field

from bastion.errors import InvalidValue
from bastion.risks import lifecycle
from bastion.schema import roles
from bastion.schema.kinds import RISK_REASONS, RISK_STATES
from bastion.server.context import READ, TRIAGE, Context
from bastion.server.problems import PreconditionFailed, responses
from bastion.server.routes.entities import _if_match
from bastion.server.schemas import EntityOut, EntityPage
from bastion.store import filters

router = APIRouter(tags=["risks"])

WHERE = Query(default=[], description="Filters as in the CLI's `--where` on risks: "
              "`severity>=high`, `kev=true`, `first_seen<-30d`, `~text` …; repeat for AND")
TEXT = Query(default=None, max_length=200, description="Text search in title and name (as `~text`)")
LIMIT = Query(default=None, ge=1, le=10000, description="Page size (capped by the server)")


def _risk_filter(ctx: Context, where: list[str], q: str | None, now: datetime,
                 *extra: str) -> filters.Filter:
    """The filter, parsed once; a field the key's role sees masked cannot be filtered on (the
    answer would tell its value)."""
    flt = filters.parse("risk", [*extra, *where, *([f"~{q}"] if q else [])], now=now)
    roles.check_filterable("risk", flt.conditions, ctx.role)
    return flt


@router.get("/risks", response_model=EntityPage, summary="Open risks (triage or open), highest "
            "priority first", responses=responses())
def open_risks(where: list[str] = WHERE, q: str | None = TEXT,
               cursor: str | None = Query(default=None, description="`next_cursor` of the previous page"),
               limit: int | None = LIMIT, ctx: Context = Depends(READ)) -> dict[str, Any]:
    # "not closed" rather than "status=triage,open": a second `status=` would widen that
    closed = [s for s in RISK_STATES if s not in lifecycle.OPEN_STATES]
    flt = _risk_filter(ctx, where, q, datetime.now(timezone.utc), "!status=" + ",".join(closed))
    page = ctx.tenant.list("risk", where=flt, order_by="priority", descending=True, after=cursor,
                           limit=ctx.limit(limit))
    return {"items": [ctx.record(r) for r in page.records], "next_cursor": page.next_cursor}


class OverdueRisk(BaseModel):
    risk: EntityOut
    due: datetime = Field(description="First seen + the SLA days of its severity")
    days_overdue: int


class OverduePage(BaseModel):
    items: list[OverdueRisk]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")


def _overdue_cursor(rec) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([rec.first_seen.isoformat(), rec.key])).decode()


def _overdue_after(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    try:
        first_seen, key = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        at = datetime.fromisoformat(first_seen)
        return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)), str(key)
    except (ValueError, TypeError):
        raise InvalidValue(f"invalid page cursor {cursor!r}", "cursor") from None


@router.get("/risks/overdue", response_model=OverduePage, summary="Open risks past their SLA "
            "deadline, the first seen first", responses=responses())
def overdue(where: list[str] = WHERE, q: str | None = TEXT,
            cursor: str | None = Query(default=None, description="`next_cursor` of the previous page"),
            limit: int | None = LIMIT, ctx: Context = Depends(READ)) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    flt = _risk_filter(ctx, where, q, now)
    n = ctx.limit(limit)
    found = lifecycle.overdue(ctx.tenant, now, n + 1, where=flt, after=_overdue_after(cursor))
    page = found[:n]
    return {"items": [{"risk": ctx.record(r), "due": due, "days_overdue": (now - due).days}
                      for r, due in page],
            "next_cursor": _overdue_cursor(page[-1][0]) if len(found) > n else None}


class StatusIn(BaseModel):
    key: str = Field(max_length=2000, description="The risk's key")
    status: Literal[RISK_STATES]  # type: ignore[valid-type]
    reason: Literal[RISK_REASONS] | None = Field(  # type: ignore[valid-type]
        default=None, description="Why it is closed: only with remediated or deleted (deleted needs one)")
    comment: str | None = Field(default=None, max_length=4000,
                                description="Kept on the risk (confidential) and on the event")


@router.post("/risks/status", response_model=EntityOut, summary="Set a risk's status (an event)",
             responses=responses(404, 409, 412))
def set_status(response: Response, body: StatusIn = Body(),
               if_match: str | None = Header(default=None, description="The version you read "
                                             "(ETag): the change fails with 412 if it changed"),
               ctx: Context = Depends(TRIAGE)) -> dict[str, Any]:
    try:
        rec = lifecycle.set_status(ctx.tenant, body.key, body.status, reason=body.reason,
                                   comment=body.comment, actor=ctx.actor, source=ctx.source,
                                   expected_version=_if_match(if_match))
    except lifecycle.StaleVersion as exc:
        raise PreconditionFailed(str(exc)) from None
    response.headers["ETag"] = f'"{rec.version}"'
    return ctx.record(rec)


class ExposedTechnique(BaseModel):
    id: str
    name: str | None = None
    roles: list[str]
    watched: bool
    would_cover: list[str]


class ExposureOut(BaseModel):
    risk: str
    name: str
    title: str | None = None
    cve: str | None = None
    severity: str
    priority: float
    status: str
    asset: str | None = None
    criticality: str
    account: str
    score: float
    unseen: bool
    techniques: list[ExposedTechnique]


class TechniqueExposure(BaseModel):
    technique: str
    name: str | None = None
    risks: int
    accounts: list[str]
    top_score: float


class ExposuresOut(BaseModel):
    attack_version: str
    exposures: list[ExposureOut]
    techniques: list[TechniqueExposure]


@router.get("/exposures", response_model=ExposuresOut, summary="Open risks whose ATT&CK "
            "techniques no working detection of their account watches, highest score first",
            responses=responses(404))
def unwatched_exposures(account: str | None = Query(default=None, max_length=300,
                                                    description="aws:ID or an account key"),
                        limit: int | None = LIMIT, ctx: Context = Depends(READ)) -> dict[str, Any]:
    """`bastion exposures`: score = priority × the asset's criticality weight."""
    from bastion.coverage.inventory import account_key
    from bastion.risks.exposures import exposed_techniques, exposures

    catalog = ctx.tenant.coverage.catalog("enterprise")
    items = exposures(ctx.tenant, catalog, account=account_key(account) if account else None)
    techniques = exposed_techniques(items)
    mask = lambda key: roles.mask_key(key, ctx.role) if key else key  # noqa: E731
    out = []
    for e in items[:ctx.limit(limit)]:
        d = e.as_dict()
        d.update(risk=mask(d["risk"]), asset=mask(d["asset"]), account=mask(d["account"]))
        out.append(d)
    for t in techniques:
        t["accounts"] = [mask(a) for a in t["accounts"]]
    return {"attack_version": catalog.version, "exposures": out, "techniques": techniques}
