"""Retention: a per-tenant time to live for what scanners found and no scan has seen since
(`bastion retention set|show|run`). The rule of what may go — scanner-made, never decided by a
person, nothing kept depending on it — is bastion.store.retention's.

The policy is the tenant setting `retention` (`{"days": N}`; changing it is a `setting.changed`
event). A run deletes assets, ports and risks whose `last_seen` is more than N days before `now`
(each with a `<kind>.deleted` event, source `retention`); `dry_run` lists them and changes nothing.
Seeds are never considered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from bastion.errors import InvalidValue
from bastion.store import retention as store_retention

SETTING = "retention"
KINDS = ("asset", "port", "risk")  # what scanners find; seeds and everything else never expire
MAX_DAYS = 36500


def _days(value: Any) -> int:
    try:
        days = int(value)
    except (TypeError, ValueError):
        days = 0
    if not 1 <= days <= MAX_DAYS or str(value).strip() != str(days):
        raise InvalidValue(f"invalid retention {value!r}: give whole days from 1 to {MAX_DAYS}")
    return days


def policy(tenant) -> int | None:
    """The tenant's retention in days, or None (keep everything)."""
    value = tenant.settings().get(SETTING)
    return value.get("days") if isinstance(value, dict) else None


def set_policy(tenant, days: int | None, *, actor: str, source: str) -> bool:
    """Set (None: remove) the tenant's retention; False when it was already so."""
    value = None if days is None else {"days": _days(days)}
    return tenant.set_setting(SETTING, value, actor=actor, source=source)


@dataclass
class Report:
    days: int
    cutoff: datetime
    dry_run: bool
    selection: store_retention.Selection

    def as_dict(self) -> dict[str, Any]:
        s = self.selection
        return {"days": self.days, "cutoff": self.cutoff, "dry_run": self.dry_run,
                "expired": [{"key": c.key, "kind": c.kind, "last_seen": c.last_seen} for c in s.expired],
                "cascaded": s.cascaded, "kept_decided": s.decided, "kept_not_scanned": s.not_scanned,
                "kept_depended_on": s.depended_on, "events": s.events,
                "correlation_id": s.correlation_id or None}


def run(tenant, *, actor: str, days: int | None = None, now: datetime | None = None,
        dry_run: bool = False) -> Report:
    """Apply the tenant's retention (or `days` for this run) as of `now` (default: the clock)."""
    if days is None:
        days = policy(tenant)
        if days is None:
            raise InvalidValue(f"tenant {tenant.name!r} has no retention policy: set one with "
                               "`bastion retention set --days N` or give --days")
    days = _days(days)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    cutoff = now - timedelta(days=days)
    found = store_retention.expire(tenant, KINDS, cutoff, now=now, actor=actor, dry_run=dry_run)
    return Report(days, cutoff, dry_run, found)
