"""What changed: the event log by import run, correlation id, time range and kind, and what an
import run did to the inventory (new, closed and re-opened risks; new and vanished assets and
ports).

Every change is an event (bastion.store.writer), and the events of one import run carry the
run's correlation id (bastion.store.runs), so both questions are reads of the event log
(bastion.store.eventlog).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bastion.errors import InvalidValue
from bastion.schema.kinds import REGISTRY
from bastion.store import eventlog, runs
from bastion.store.filters import parse_time
from bastion.store.store import OPEN_RISK_STATES, Event, _event
from bastion.store.tables import event

EVENT_KINDS = (*REGISTRY.node_kinds, "edge", "setting")  # what `kind` may name
MAX_KEYS = 1000  # keys listed per category of a run summary (the counts are always exact)


def _instant(value: datetime | str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:  # in UTC, as stored; an offset may push the year past 9999
        return parse_time(value, what).astimezone(timezone.utc)
    except OverflowError:
        raise InvalidValue(f"{what}: {value!s} is out of range") from None


def _text(value: str | None, what: str) -> str | None:
    if value is not None and "\x00" in value:  # PostgreSQL text cannot hold it: nothing matches
        raise InvalidValue(f"{what} {value!r} contains a NUL character")
    return value


def changes(tenant, *, run: int | None = None, correlation_id: str | None = None,
            since: datetime | str | None = None, until: datetime | str | None = None,
            kind: str | None = None, after_seq: int = 0, limit: int = 1000,
            event_type: str | None = None) -> list[Event]:
    """The tenant's events in order (by sequence number), those of one import run or one
    correlation id, from `since` (inclusive) to `until` (exclusive), of one entity kind (or
    `edge`, `setting`), of one event type (`*` matches any text: `risk.*`): at most `limit`
    after `after_seq`; page on by passing the last event's seq back. Times are datetimes or
    text (ISO 8601, or relative: `-7d`, `-12h`)."""
    if not 1 <= limit <= 10000:
        raise InvalidValue("limit must be between 1 and 10000")
    correlation_id = _text(correlation_id, "correlation id")
    event_type = _text(event_type, "event type")
    if kind is not None and kind not in EVENT_KINDS:
        raise InvalidValue(f"unknown kind {kind!r}; one of: {', '.join(EVENT_KINDS)}")
    if run is not None:
        cid = runs.get_import(tenant.scope, run).correlation_id
        if correlation_id is not None and correlation_id != cid:
            return []
        correlation_id = cid
    scope = tenant.scope
    where = []
    if (start := _instant(since, "since")) is not None:
        where.append(event.c.occurred_at >= start)
    if (end := _instant(until, "until")) is not None:
        where.append(event.c.occurred_at < end)
    if kind is not None:
        where.append(event.c.entity_kind == kind)
    if event_type is not None:
        where.append(_event_type_matches(event_type))
    with scope.transaction() as conn:
        if correlation_id is not None:
            rows = eventlog.correlated(scope, conn, correlation_id, after=after_seq, limit=limit,
                                       where=where)
        else:
            rows = eventlog.page(scope, conn, after=after_seq, limit=limit, where=where)
        return [_event(r) for r in rows]


def _event_type_matches(pattern: str):
    # Event types are lower case; so is the pattern, so SQLite's case-blind LIKE and
    # PostgreSQL's case-sensitive one agree.
    pattern = pattern.lower()
    if "*" not in pattern:
        return event.c.event_type == pattern
    # A glob as LIKE: the event types' own `_` (status_changed) and any `%` match literally.
    like = (pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            .replace("*", "%"))
    return event.c.event_type.like(like, escape="\\")


@dataclass
class Category:
    count: int = 0
    keys: list[str] = field(default_factory=list)  # the first MAX_KEYS, in event order

    def add(self, key: str) -> None:
        self.count += 1
        if len(self.keys) < MAX_KEYS:
            self.keys.append(key)


CATEGORIES = ("new_risks", "closed_risks", "reopened_risks", "new_assets", "vanished_assets",
              "new_ports", "vanished_ports")


@dataclass
class RunSummary:
    """What one import run changed. A risk is closed when it leaves the open states (triage,
    open) or is deleted, re-opened when it comes back to them; an asset vanishes when it is
    deleted or becomes inactive, a port when it is deleted or no longer open."""

    run: int
    source: str
    status: str
    started_at: datetime
    correlation_id: str
    events: int = 0
    categories: dict[str, Category] = field(
        default_factory=lambda: {name: Category() for name in CATEGORIES})

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "source": self.source, "status": self.status,
                "started_at": self.started_at, "correlation_id": self.correlation_id,
                "events": self.events,
                **{name: {"count": c.count, "keys": c.keys} for name, c in self.categories.items()}}


def _category(ev: Event) -> str | None:
    kind, what = ev.entity_kind, ev.event_type.rpartition(".")[2]
    if kind not in ("risk", "asset", "port"):
        return None
    if what == "created":
        return f"new_{kind}s"
    if what == "deleted":
        return "closed_risks" if kind == "risk" else f"vanished_{kind}s"
    field_name = {"risk": "status", "asset": "status", "port": "state"}[kind]
    change = ev.diff.get(field_name)
    if not change:
        return None
    old, new = change
    if kind == "risk":
        if old in OPEN_RISK_STATES and new not in OPEN_RISK_STATES:
            return "closed_risks"
        if old not in OPEN_RISK_STATES and new in OPEN_RISK_STATES:
            return "reopened_risks"
        return None
    gone = "inactive" if kind == "asset" else "open"
    if kind == "asset" and new == gone and old != gone:
        return "vanished_assets"
    if kind == "port" and old == gone and new != gone:
        return "vanished_ports"
    return None


def run_summary(tenant, run_id: int) -> RunSummary:
    """What import run `run_id` changed, from its events (a run whose files were all reused
    changed nothing)."""
    run = runs.get_import(tenant.scope, run_id)
    summary = RunSummary(run.id, run.source, run.status, run.started_at, run.correlation_id)
    scope = tenant.scope
    with scope.transaction() as conn:
        found = eventlog.correlation(scope, conn, run.correlation_id)
        rows = eventlog.each(scope, conn, where=found[0], commits_where=found[1]) if found else ()
        for row in rows:
            ev = _event(row)
            summary.events += 1
            name = _category(ev)
            if name is not None:
                summary.categories[name].add(ev.entity_key)
    return summary
