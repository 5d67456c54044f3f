"""The risk lifecycle: how an observation combines with a stored risk, analyst transitions, SLA.

A risk's status is a state (triage, open, accepted, remediated, deleted) with a reason when it
was closed. Scanners only ever *observe*: a new risk starts in the tenant's initial state
(triage unless set to open); an observation of a remediated risk re-opens it, with a note on the
event saying who saw it again; an analyst's decision (accepted, deleted as false positive, out of
scope, duplicate …) is never changed by scanner data — the observation only adds evidence and
moves `last_seen`. `--close-missing` remediates open risks of the importing source that the
import did not observe, with reason `not_observed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from bastion.errors import ConflictError, InvalidValue
from bastion.schema.kinds import RISK_REASONS, RISK_STATES, SEVERITIES

OPEN_STATES = ("triage", "open")
ANALYST_STATES = ("accepted", "deleted")  # decisions scanner data never overrides
MAX_EVIDENCE = 20

INITIAL_STATUS_SETTING = "risk.initial_status"
SLA_SETTING = "risk.sla_days"
DEFAULT_SLA_DAYS = {"critical": 7, "high": 30, "medium": 90, "low": 180}  # info: no deadline


def initial_status(settings: dict[str, Any]) -> str:
    status = settings.get(INITIAL_STATUS_SETTING, "triage")
    return status if status in OPEN_STATES else "triage"


def sla_days(settings: dict[str, Any]) -> dict[str, int]:
    days = dict(DEFAULT_SLA_DAYS)
    days.update(settings.get(SLA_SETTING) or {})
    return {sev: int(d) for sev, d in days.items() if sev in SEVERITIES and d is not None}


def parse_sla(text: str) -> dict[str, int]:
    """`critical=7,high=30` → {"critical": 7, "high": 30}; raises InvalidValue."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        sev, sep, days = part.partition("=")
        sev = sev.strip().lower()
        if not sep or sev not in SEVERITIES:
            raise InvalidValue(f"invalid SLA {part!r}: use SEVERITY=DAYS with a severity of "
                               + ", ".join(SEVERITIES))
        try:
            out[sev] = int(days)
        except ValueError:
            raise InvalidValue(f"invalid SLA {part!r}: days must be a whole number") from None
        if out[sev] < 0:
            raise InvalidValue(f"invalid SLA {part!r}: days cannot be negative")
    return out


def due_date(severity: str, first_seen: datetime, days: dict[str, int]) -> datetime | None:
    n = days.get(severity)
    return None if n is None else first_seen + timedelta(days=n)


def merge_evidence(old: list[str] | None, new: list[str]) -> list[str]:
    """Stored evidence first, then what is new; distinct, at most MAX_EVIDENCE items."""
    merged = list(dict.fromkeys([*(old or []), *new]))
    return merged[:MAX_EVIDENCE]


@dataclass
class Transition:
    """The lifecycle part of an observation: the values to keep, and why (for the event)."""

    status: str
    reason: str | None
    reopened: bool = False


def observed(stored_status: str | None, stored_reason: str | None, initial: str) -> Transition:
    """The status after a scanner observes a risk (None: the risk is new)."""
    if stored_status is None:
        return Transition(initial, None)
    if stored_status == "remediated":
        return Transition("open", None, reopened=True)
    return Transition(stored_status, stored_reason)  # open states go on; analyst decisions stay


def check_transition(status: str, reason: str | None) -> tuple[str, str | None]:
    """An analyst's `set-status`: the state must be known, a reason fits only a closed state."""
    status = status.strip().lower()
    if status not in RISK_STATES:
        raise InvalidValue(f"unknown risk state {status!r}; one of: {', '.join(RISK_STATES)}")
    if reason is not None:
        reason = reason.strip().lower().replace(" ", "_").replace("-", "_")
        if reason not in RISK_REASONS:
            raise InvalidValue(f"unknown reason {reason!r}; one of: {', '.join(RISK_REASONS)}")
        if status in OPEN_STATES or status == "accepted":
            raise InvalidValue(f"a reason is given only when a risk is remediated or deleted, not {status}")
    if status == "deleted" and reason is None:
        raise InvalidValue("deleting a risk needs --reason (false_positive, out_of_scope, duplicate or other)")
    return status, reason


def set_status(tenant, key: str, state: str, *, reason: str | None, comment: str | None,
               actor: str, source: str = "cli", expected_version: int | None = None):
    """An analyst's transition of one risk, written as an event (the comment is its note).

    With `expected_version` (the API's If-Match) the change applies only to that version of
    the risk: any other version is a StaleVersion (a ConflictError) naming both, and nothing
    is written.
    Without it the risk is read and the new status applied on top of it.
    When the risk changed between that read and the write (a scanner's evidence, a KEV or EPSS
    update), it is read again and the status applied on top of what is there now — unless its
    status was changed in between by someone else, which makes this change moot: then a
    ConflictError says who changed it, when, and to what (from the event log), and nothing is
    written."""
    from bastion.errors import NotFound
    from bastion.schema.batch import Batch, Entity
    from bastion.schema.keys import kind_of

    if kind_of(key) != "risk":
        raise InvalidValue(f"{key} is not a risk")
    status, reason = check_transition(state, reason)
    rec = tenant.get(key)
    if rec is None:
        raise NotFound(f"no risk {key}")
    if expected_version is not None and rec.version != expected_version:
        raise StaleVersion(stale_version(key, rec.version, expected_version))
    seen = rec
    for _attempt in range(10):
        values = {**rec.values, "status": status, "reason": reason}
        if comment is not None:
            values["comment"] = comment
        batch = Batch()
        batch.entities.append(Entity("risk", values, rec.properties, rec.version, note=comment))
        try:
            tenant.apply(batch, actor=actor, source=source, observed=False)
        except ConflictError:  # written in between: read it again
            if expected_version is not None:  # the version asked for is gone
                now = tenant.get(key)
                raise StaleVersion(stale_version(key, now.version if now else None,
                                                 expected_version)) from None
            rec = tenant.get(key)
            if rec is None:
                raise NotFound(f"no risk {key}: it was deleted while being changed") from None
            if (rec.values["status"], rec.values.get("reason")) != (
                    seen.values["status"], seen.values.get("reason")):
                raise ConflictError(status_changed_since(tenant, key, seen.version, status)) from None
            continue
        return tenant.get(key)
    raise ConflictError(f"{key} kept changing while its status was being set; nothing was "
                        "written: try again")


class StaleVersion(ConflictError):
    """The risk is no longer at the version the change was made for (If-Match)."""


def stale_version(key: str, current: int | None, expected: int) -> str:
    now = "deleted" if current is None else f"at version {current}"
    return f"{key} is {now}, not version {expected}; nothing was written: read it again"


def status_changed_since(tenant, key: str, version: int, wanted: str) -> str:
    """Who changed the risk's status after `version`, when, and to what (the latest such
    event), and that this change (to `wanted`) was not made."""
    changes = [e for e in tenant.history(key)
               if (e.entity_version or 0) > version and ("status" in e.diff or "reason" in e.diff)]
    if not changes:
        return f"{key} changed while its status was being set; nothing was written: try again"
    ev = changes[-1]
    new = ev.diff.get("status", [None, None])[1]
    why = ev.diff.get("reason", [None, None])[1]
    to = f"{new or 'its status'}" + (f" ({why})" if why else "")
    at = ev.occurred_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return (f"{key} was set to {to} by {ev.actor} at {at} (event {ev.seq}) while you were "
            f"setting it to {wanted}; not changed: run the command again to set it anyway")
@dataclass
class RiskSettings:
    """A tenant's SLA days per severity (only those with a deadline) and the state new findings
    start in."""

    sla_days: dict[str, int]
    initial_status: str


def risk_settings(tenant) -> RiskSettings:
    settings = tenant.settings()
    return RiskSettings(sla_days(settings), initial_status(settings))


def configure(tenant, *, sla: str | dict[str, int] | None = None,
              initial: str | None = None, actor: str, source: str = "cli") -> RiskSettings:
    """Change a tenant's SLA days (`critical=7,high=30` or a mapping: merged over the days set
    before, the other severities keep theirs) and/or the state new findings start in (triage
    or open); each change is a `setting.changed` event. Returns the settings after."""
    if initial is not None and initial not in OPEN_STATES:
        raise InvalidValue("--initial-status must be triage or open")
    if sla is not None:
        given = parse_sla(sla) if isinstance(sla, str) else parse_sla(
            ",".join(f"{k}={v}" for k, v in sla.items()))
        # merged over the stored days in the store's transaction: a concurrent change of
        # another severity is not lost
        tenant.set_setting(SLA_SETTING, given, actor=actor, source=source, merge=True)
    if initial is not None:
        tenant.set_setting(INITIAL_STATUS_SETTING, initial, actor=actor, source=source)
    return risk_settings(tenant)


def overdue(tenant, at: datetime, limit: int = 100, *, where=None,
            after: tuple[datetime, str] | None = None) -> list[tuple[Any, datetime]]:
    """(risk, due date) of open risks past their SLA at `at`, the first seen first, filtered
    (`where`: bastion.store.filters); page on with `after`, the last risk's (first_seen, key)."""
    days = sla_days(tenant.settings())
    cutoffs = {sev: at - timedelta(days=n) for sev, n in days.items()}
    return [(r, due_date(r.values["severity"], r.first_seen, days))
            for r in tenant.overdue_risks(cutoffs, limit, where=where, after=after)]
