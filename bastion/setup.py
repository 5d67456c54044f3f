"""Setting a database up: the schema at the newest revision, the application role's grants, the
tenants and the default ATT&CK catalog. `bastion init` and `bastion demo` call `initialize()`;
a server starting on an empty database would call the same."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from bastion.coverage.attack import Release, ensure_default_catalog
from bastion.store import migrate
from bastion.store.store import DEFAULT_TENANT, Store


@dataclass(frozen=True)
class Initialized:
    before: str | None  # the revision found (None: an empty database)
    revision: str  # the revision now (head)
    tenants: tuple[str, ...]
    catalog: Release | None  # the default ATT&CK catalog, when this call loaded it

    @property
    def state(self) -> str:
        if self.before is None:
            return "created"
        return "already up to date" if self.before == self.revision else f"upgraded from {self.before}"


def initialize(store: Store, *, actor: str, tenants: Iterable[str] = (DEFAULT_TENANT,),
               command: str = "bastion init") -> Initialized:
    """Create or upgrade the schema, re-apply grants and policies (PostgreSQL; needs the owner
    login, `command` names who asked), make sure the tenants exist and an ATT&CK Enterprise
    catalog is stored. Safe to run again."""
    store.require_owner(command)
    before = store.revision()
    store.upgrade("head")
    store.apply_grants(command)
    names = tuple(dict.fromkeys(tenants))
    for name in names:
        store.ensure_tenant(name)
    catalog = ensure_default_catalog(store, actor=actor)
    return Initialized(before, migrate.head(), names, catalog)
