"""`bastion db health` (bastion.store.health reads the engine's statistics)."""

from __future__ import annotations

from datetime import timedelta

from bastion.store import health as store_health
from bastion.store.health import Health


def health(store, *, long_after: timedelta = timedelta(minutes=5), quick: bool = False) -> Health:
    """The health of the store's database: see bastion.store.health."""
    return store_health.check(store, long_after=long_after, quick=quick)
