"""Risks: the API's filters (severity, status, source, KEV, text, time ranges) over the risk list
in priority order, paged by keyset, downloadable as CSV; a risk's page (evidence masked for the
role, its asset and port, provenance, history with notes) where analysts change its status with a
comment (bastion.risks.lifecycle.set_status, as POST /v1/risks/status)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request

from bastion.errors import InvalidValue, NotFound
from bastion.risks import lifecycle
from bastion.schema import roles
from bastion.schema.keys import kind_of
from bastion.schema.kinds import RISK_REASONS, RISK_STATES, SEVERITIES
from bastion.server.context import Context
from bastion.store import export, filters
from bastion.web.app import event, READ, console_write, csv_response, redirect, render

router = APIRouter()

PAGE = 50
OPEN = "open"  # the status choice meaning "triage or open", the API's /v1/risks
TIME_FIELDS = ("first_seen", "last_seen")


@dataclass
class RiskQuery:
    """The filter form, as query parameters: what the table, its pager and its CSV share."""

    severity: list[str] = field(default_factory=list)
    status: str = OPEN
    source: str = ""
    kev: str = ""
    q: str = ""
    since: str = ""  # first_seen from
    until: str = ""  # first_seen to
    seen_since: str = ""  # last_seen from

    def expressions(self) -> list[str]:
        out = []
        if self.severity:
            out.append("severity=" + ",".join(self.severity))
        if self.status == OPEN:
            out.append("status=" + ",".join(lifecycle.OPEN_STATES))
        elif self.status != "any":
            out.append(f"status={self.status}")
        if self.source:
            out.append(f"source~{self.source}")
        if self.kev in ("true", "false"):
            out.append(f"kev={self.kev}")
        if self.q:
            out.append(f"~{self.q}")
        if self.since:
            out.append(f"first_seen>={self.since}")
        if self.until:
            out.append(f"first_seen<={self.until}")
        if self.seen_since:
            out.append(f"last_seen>={self.seen_since}")
        return out

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}

    def filter(self, ctx: Context) -> filters.Filter:
        """Parsed once (relative times fixed); a field the role sees masked is refused, as the API
        does."""
        flt = filters.parse("risk", self.expressions(), now=datetime.now(timezone.utc))
        roles.check_filterable("risk", flt.conditions, ctx.role)
        return flt


def risk_query(severity: list[str] = Query(default=[]), status: str = OPEN, source: str = "",
               kev: str = "", q: str = Query(default="", max_length=200), since: str = "",
               until: str = "", seen_since: str = "") -> RiskQuery:
    severity = [s for s in severity if s]
    for s in severity:
        if s not in SEVERITIES:
            raise InvalidValue(f"severity {s!r}: choose from {', '.join(SEVERITIES)}", "severity")
    if status not in (OPEN, "any", *RISK_STATES):
        raise InvalidValue(f"status {status!r}: choose from open, any, {', '.join(RISK_STATES)}",
                           "status")
    return RiskQuery(severity, status, source.strip(), kev, q.strip(), since.strip(),
                     until.strip(), seen_since.strip())


COUNT_CAP = 10000  # beyond this the page says "10000+" rather than count a million rows


@router.get("/risks")
def risks(request: Request, query: RiskQuery = Depends(risk_query),
          cursor: str | None = None, ctx: Context = Depends(READ)):
    flt = query.filter(ctx)
    page = ctx.tenant.list("risk", where=flt, order_by="priority", descending=True, after=cursor,
                           limit=PAGE)
    return render(request, ctx, "risks.html", query=query, params=query.params(),
                  risks=[ctx.record(r) for r in page.records], next_cursor=page.next_cursor,
                  cursor=cursor, states=RISK_STATES, count_cap=COUNT_CAP,
                  total=ctx.tenant.count("risk", where=flt, at_most=COUNT_CAP + 1)
                  if cursor is None else None)


@router.get("/risks.csv")
def risks_csv(query: RiskQuery = Depends(risk_query), ctx: Context = Depends(READ)):
    flt = query.filter(ctx)
    rows = (ctx.record(r) for r in ctx.tenant.iterate("risk", where=flt, order_by="priority",
                                                      descending=True))
    return csv_response("risks.csv", rows, export.columns("risk"))


def _get(ctx: Context, key: str, kind: str):
    rec = ctx.tenant.get(key) if kind_of(key) == kind else None
    if rec is None:
        raise NotFound(f"no {kind} {key}")
    return rec


@router.get("/risk")
def risk_page(request: Request, key: str = Query(max_length=2000), ctx: Context = Depends(READ)):
    rec = _get(ctx, key, "risk")
    risk = ctx.record(rec)
    target = ctx.tenant.get(rec.values["target"]) if rec.values.get("target") else None
    port = asset = None
    if target is not None and target.kind == "port":
        port = ctx.record(target)
        found = ctx.tenant.get(target.values["asset"])
        asset = ctx.record(found) if found else None
    elif target is not None and target.kind == "asset":
        asset = ctx.record(target)
    history = [event(ctx, e) for e in ctx.tenant.history(key)]
    provenance: dict[tuple[str, str], dict[str, Any]] = {}
    for ev in history:  # who reported or changed it, through which path, when
        p = provenance.setdefault((ev["source"], ev["actor"]), {
            "source": ev["source"], "actor": ev["actor"], "first": ev["occurred_at"], "events": 0})
        p["last"] = ev["occurred_at"]
        p["events"] += 1
    return render(request, ctx, "risk.html", risk=risk, raw_key=key, asset=asset, port=port,
                  target=ctx.record(target) if target else None, history=list(reversed(history)),
                  provenance=list(provenance.values()), states=RISK_STATES, reasons=RISK_REASONS,
                  saved=request.query_params.get("saved"))


@router.post("/risk/status")
def set_status(key: str = Form(max_length=2000), status: str = Form(),
               reason: str = Form(default=""), comment: str = Form(default="", max_length=4000),
               version: int | None = Form(default=None),
               ctx: Context = Depends(console_write(roles.TRIAGE))):
    if status not in RISK_STATES:
        raise InvalidValue(f"status {status!r}: choose from {', '.join(RISK_STATES)}", "status")
    if reason and reason not in RISK_REASONS:
        raise InvalidValue(f"reason {reason!r}: choose from {', '.join(RISK_REASONS)}", "reason")
    lifecycle.set_status(ctx.tenant, key, status, reason=reason or None,
                         comment=comment.strip() or None, actor=ctx.actor, source=ctx.source,
                         expected_version=version)
    return redirect("/risk", key=key, saved="status")
