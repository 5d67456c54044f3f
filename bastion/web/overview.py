"""Overview: entities per kind, open risks by severity, overdue risks, coverage per account, the
last imports with what each changed, and trends of open risks (from the event log) and of
coverage (from the coverage history)."""

from __future__ import annotations

import threading

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Depends, Request

from bastion.coverage.history import history as coverage_history
from bastion.risks import lifecycle
from bastion.schema.kinds import SEVERITIES
from bastion.server.context import Context
from bastion.store import changes as changes_lib
from bastion.web import charts
from bastion.web.app import READ, render, while_unchanged

router = APIRouter()

TREND_DAYS = 30
TREND_TTL = 300.0  # seconds a tenant's open-risk trend is reused before it is recomputed
ACCOUNTS_SHOWN = 10
RUNS_SHOWN = 5
OVERDUE_SHOWN = 10
EVENT_PAGE = 5000

_trends: dict[tuple[str, int, int], tuple[float, list[tuple[datetime, float]]]] = {}
_trend_lock = threading.Lock()


def _is_open(status: Any) -> int:
    return int(status in lifecycle.OPEN_STATES)


def open_risk_trend(ctx: Context, open_now: int, now: datetime) -> list[tuple[datetime, float]]:
    """Open risks at the end of each of the last TREND_DAYS days: today's count walked back
    through the status changes of the event log (a risk created open counts +1 on its day, a
    status change from open to closed −1 …). Reused for TREND_TTL seconds per database, tenant
    and open count: the walk reads every risk event of the window."""
    tenant_id = (str(ctx.tenant.scope.engine.url), ctx.tenant.tenant_id, open_now)
    with _trend_lock:
        cached = _trends.get(tenant_id)
    if cached and time.monotonic() - cached[0] < TREND_TTL:
        return cached[1]
    start = (now - timedelta(days=TREND_DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
    delta_by_day: dict[int, int] = {}
    after = 0
    while True:
        events = changes_lib.changes(ctx.tenant, kind="risk", since=start, after_seq=after,
                                     limit=EVENT_PAGE)
        for ev in events:
            change = (ev.diff or {}).get("status")
            if isinstance(change, list) and len(change) == 2:
                delta = _is_open(change[1]) - _is_open(change[0])
            elif ev.event_type.endswith(".deleted"):
                delta = 0  # a deleted risk's status change came before, as its own event
            else:
                continue
            if delta:
                day = (ev.occurred_at - start).days
                delta_by_day[day] = delta_by_day.get(day, 0) + delta
        if len(events) < EVENT_PAGE:
            break
        after = events[-1].seq
    points = []
    count = open_now
    for day in range(TREND_DAYS, -1, -1):  # end of day `day`, newest first
        points.append((start + timedelta(days=day + 1), float(count)))
        count -= delta_by_day.get(day, 0)
    points.reverse()
    with _trend_lock:
        _trends[tenant_id] = (time.monotonic(), points)
    return points


def _coverage_points(snapshots) -> list[tuple[datetime, float]]:
    return [(s["taken_at"], float(s["overall"]["percent"])) for s in snapshots
            if s.get("taken_at") and isinstance(s.get("overall"), dict)]


def _aggregates(ctx: Context, now: datetime) -> dict:
    tenant = ctx.tenant
    open_where = "status=" + ",".join(lifecycle.OPEN_STATES)
    counted = tenant.count_by("risk", "severity", where=[open_where])
    by_severity = {s: counted.get(s, 0) for s in reversed(SEVERITIES)}
    open_now = sum(by_severity.values())
    return {
        "by_severity": by_severity, "open_now": open_now,
        "overdue": lifecycle.overdue(tenant, now, OVERDUE_SHOWN + 1),
        "accounts": [(account, coverage_history(tenant, account.key, techniques=False))
                     for account in tenant.list("cloud_account", limit=ACCOUNTS_SHOWN).records],
        "tenant_history": coverage_history(tenant, None, techniques=False),
        "runs": [r.as_dict() for r in tenant.runs.list(RUNS_SHOWN)],
        "counts": tenant.counts(),
        "trend": open_risk_trend(ctx, open_now, now),
    }


@router.get("/")
def overview(request: Request, ctx: Context = Depends(READ)):
    now = datetime.now(timezone.utc)
    data = while_unchanged(ctx, ("overview",), lambda: _aggregates(ctx, now))
    overdue = data["overdue"]
    return render(
        request, ctx, "overview.html", counts=data["counts"], by_severity=data["by_severity"],
        open_now=data["open_now"],
        overdue=[{"risk": ctx.record(r), "due": due, "days": (now - due).days}
                 for r, due in overdue[:OVERDUE_SHOWN]],
        more_overdue=len(overdue) > OVERDUE_SHOWN,
        accounts=[{"account": ctx.record(a), "latest": h[-1] if h else None}
                  for a, h in data["accounts"]],
        runs=data["runs"],
        risk_trend=charts.line(data["trend"], label="Open risks"),
        coverage_trend=charts.line(_coverage_points(data["tenant_history"]), label="Coverage",
                                   unit="%", ymax=100))
