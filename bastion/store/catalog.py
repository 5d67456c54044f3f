"""The ATT&CK catalog tables: the only SQL for `attack_release`, `attack_object` and
`attack_relation`.

The catalog is shared reference data, not tenant data: writes run on the engine as the
connecting role (on PostgreSQL the application role may only SELECT these tables), reads take an
engine or any open connection — including a tenant transaction, where coverage reads the
catalog next to the tenant's mappings. Code outside bastion/store calls them as methods:
`Store.attack` (`AttackCatalogs` below) to list, import and activate releases,
`TenantStore.coverage.catalog(domain)` to read one in a tenant's transaction.
"""

from __future__ import annotations

import dataclasses
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from itertools import islice
from typing import Any, Iterable, Iterator

from sqlalchemy import Connection, Engine, and_, delete, insert, select, text, update

from bastion.coverage.catalog import Catalog, Tactic, Technique
from bastion.errors import NotFound
from bastion.store.tables import ATTACK_DOMAINS, attack_object, attack_relation, attack_release

BATCH = 2000  # rows per INSERT statement (executemany / multi-row VALUES)

OBJECT_COLUMNS = ("stix_id", "type", "attack_id", "name", "parent", "tactics", "platforms",
                  "shortname", "ordinal", "deprecated", "revoked", "extra")


@dataclass(frozen=True)
class Release:
    """One imported ATT&CK release (a domain at a version)."""

    domain: str  # enterprise, ics, mobile
    version: str  # "18.1", "19"
    name: str  # Enterprise ATT&CK
    source: str  # the file, package or URL it came from
    released: str | None = None  # the release's date as the data gives it
    sha256: str | None = None  # of the file it came from
    spec_version: str | None = None  # STIX 2.0 or 2.1
    counts: dict[str, Any] = field(default_factory=dict)
    active: bool = False
    imported_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@contextmanager
def _reading(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Connection):
        yield bind
    else:
        with bind.connect() as conn:
            yield conn


@contextmanager
def _writing(engine: Engine) -> Iterator[Connection]:
    # BEGIN IMMEDIATE on SQLite (see bastion.store.engine): the write lock is taken up front.
    with engine.connect().execution_options(bastion_write=True) as conn, conn.begin():
        yield conn


def _batches(rows: Iterable, size: int = BATCH) -> Iterator[list]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def _release(row) -> Release:
    return Release(domain=row.domain, version=row.version, name=row.name, source=row.source,
                   released=row.released, sha256=row.sha256, spec_version=row.spec_version,
                   counts=row.counts or {}, active=bool(row.active), imported_at=row.imported_at)


def replace_release(engine: Engine, release: Release, objects: Iterable[dict[str, Any]],
                    relations: Iterable[tuple[str, str, str]], activate: bool) -> Release:
    """Store a release with its objects (dicts of OBJECT_COLUMNS) and relations
    ((source STIX id, kind, target STIX id)), all or nothing. A release of the same domain and
    version is replaced (an active one stays active). With `activate`, it becomes the domain's
    active release in the same transaction."""
    now = datetime.now(timezone.utc)
    dv = {"domain": release.domain, "version": release.version}
    with _writing(engine) as conn:
        was_active = conn.execute(
            select(attack_release.c.active).where(attack_release.c.domain == release.domain,
                                                  attack_release.c.version == release.version)
        ).scalar_one_or_none()
        active = bool(activate or was_active)
        # Objects and relations go with their release (ON DELETE CASCADE), explicitly here so
        # the statement does not depend on SQLite's foreign_keys pragma.
        for table in (attack_relation, attack_object, attack_release):
            conn.execute(delete(table).where(table.c.domain == release.domain,
                                             table.c.version == release.version))
        if active:
            conn.execute(update(attack_release).where(attack_release.c.domain == release.domain,
                                                      attack_release.c.active).values(active=False))
        conn.execute(insert(attack_release).values(
            **dv, name=release.name, released=release.released, source=release.source,
            sha256=release.sha256, spec_version=release.spec_version, imported_at=now,
            active=active, counts=release.counts))
        for chunk in _batches(objects):
            conn.execute(insert(attack_object), [
                {**dv, **{c: o.get(c) for c in OBJECT_COLUMNS},
                 "deprecated": bool(o.get("deprecated")), "revoked": bool(o.get("revoked"))}
                for o in chunk])
        seen: set[tuple[str, str, str]] = set()
        for chunk in _batches(relations):
            rows = []
            for rel in chunk:
                if rel not in seen:  # a bundle may state one relation twice
                    seen.add(rel)
                    rows.append({**dv, "source": rel[0], "kind": rel[1], "target": rel[2]})
            if rows:
                conn.execute(insert(attack_relation), rows)
        if conn.dialect.name == "postgresql":  # fresh statistics for the queries that follow
            conn.execute(text("ANALYZE attack_release, attack_object, attack_relation"))
    return replace(release, active=active, imported_at=now)


def releases(bind: Engine | Connection, domain: str | None = None) -> list[Release]:
    """Every stored release (of one domain), by domain then newest version first."""
    stmt = select(attack_release)
    if domain is not None:
        stmt = stmt.where(attack_release.c.domain == domain)
    with _reading(bind) as conn:
        rows = [_release(r) for r in conn.execute(stmt)]
    rows.sort(key=lambda r: _version_key(r.version), reverse=True)
    return sorted(rows, key=lambda r: r.domain)


def release(bind: Engine | Connection, domain: str, version: str) -> Release | None:
    with _reading(bind) as conn:
        row = conn.execute(select(attack_release).where(
            attack_release.c.domain == domain, attack_release.c.version == version)).first()
    return _release(row) if row is not None else None


def _version_key(version: str) -> tuple:
    """"9.0" < "18.1" < "19": numeric parts compare as numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.split("."))


def set_active(engine: Engine, domain: str, version: str) -> Release:
    """Make a stored release the active one of its domain (one transaction; the partial unique
    index `uq_attack_release_active` guarantees there is never a second)."""
    with _writing(engine) as conn:
        exists = conn.execute(select(attack_release.c.version).where(
            attack_release.c.domain == domain, attack_release.c.version == version)).first()
        if exists is None:
            have = conn.execute(select(attack_release.c.version)
                                .where(attack_release.c.domain == domain)).scalars().all()
            listed = ", ".join(sorted(have, key=_version_key)) or "none"
            raise NotFound(f"no ATT&CK {domain} release {version!r} is imported "
                           f"(imported: {listed}; see `bastion attack versions`)")
        conn.execute(update(attack_release).where(
            attack_release.c.domain == domain, attack_release.c.active,
            attack_release.c.version != version).values(active=False))
        conn.execute(update(attack_release).where(
            attack_release.c.domain == domain, attack_release.c.version == version).values(active=True))
        row = conn.execute(select(attack_release).where(
            attack_release.c.domain == domain, attack_release.c.version == version)).one()
    return _release(row)


def active_version(bind: Engine | Connection, domain: str = "enterprise") -> str | None:
    """The version of the domain's active release, None when it has none."""
    with _reading(bind) as conn:
        return conn.execute(select(attack_release.c.version).where(
            attack_release.c.domain == domain, attack_release.c.active)).scalar_one_or_none()


def load(bind: Engine | Connection, domain: str = "enterprise", version: str | None = None) -> Catalog:
    """A release as a Catalog (the active one when `version` is None): tactics in matrix
    order, techniques with parent, tactics, platforms, flags, the technique that revoked them
    and how many (neither revoked nor deprecated) threat groups use them (or, for a release
    without intrusion sets, the count its techniques state)."""
    o = attack_object
    with _reading(bind) as conn:
        if version is None:
            version = active_version(conn, domain)
            if version is None:
                raise NotFound(f"no active ATT&CK {domain} release: run `bastion init`, "
                               "`bastion attack import FILE` or `bastion attack use VERSION`")
        row = conn.execute(select(attack_release).where(
            attack_release.c.domain == domain, attack_release.c.version == version)).first()
        if row is None:
            raise NotFound(f"no ATT&CK {domain} release {version!r} is imported "
                           "(see `bastion attack versions`)")
        # A stored release does not change until it is imported again (a new imported_at): the
        # Catalog built from it is kept per process (a server reads it on every coverage request).
        stamp = (str(conn.engine.url), domain, version, row.sha256, row.imported_at)
        with _CACHE_LOCK:
            cached = _CACHE.get(stamp)
        if cached is not None:
            return cached
        dv = and_(o.c.domain == domain, o.c.version == version)
        tactics = [
            Tactic(r.attack_id, r.shortname or "", r.name, i)
            for i, r in enumerate(conn.execute(
                select(o.c.attack_id, o.c.shortname, o.c.name).where(
                    dv, o.c.type == "x-mitre-tactic", o.c.attack_id.is_not(None),
                    o.c.deprecated.is_(False), o.c.revoked.is_(False))
                .order_by(o.c.ordinal.is_(None), o.c.ordinal, o.c.attack_id)))]

        # Revocations and group use in Python from two narrow reads (a few thousand rows): no
        # three-way join for the planner to get wrong on freshly loaded tables.
        names = {}  # attack-pattern STIX id → attack id
        rows = conn.execute(select(o).where(dv, o.c.type == "attack-pattern",
                                            o.c.attack_id.is_not(None)).order_by(o.c.attack_id)).all()
        for r in rows:
            names[r.stix_id] = r.attack_id
        live_groups = set(conn.execute(select(o.c.stix_id).where(
            dv, o.c.type == "intrusion-set", o.c.revoked.is_(False), o.c.deprecated.is_(False))).scalars())
        rel = attack_relation
        revoked_by: dict[str, str] = {}
        users: dict[str, set[str]] = {}
        for source, kind, target in conn.execute(
                select(rel.c.source, rel.c.kind, rel.c.target).where(
                    rel.c.domain == domain, rel.c.version == version,
                    rel.c.kind.in_(("revoked-by", "uses")))):
            if target not in names:
                continue
            if kind == "revoked-by" and source in names:
                revoked_by[names[source]] = names[target]
            elif kind == "uses" and source in live_groups:
                users.setdefault(names[target], set()).add(source)
        groups = {tid: len(g) for tid, g in users.items()}
        techniques: dict[str, Technique] = {}
        for r in rows:
            t = Technique(id=r.attack_id, name=r.name, parent=r.parent,
                          tactics=tuple(r.tactics or ()), platforms=tuple(r.platforms or ()),
                          deprecated=bool(r.deprecated), revoked=bool(r.revoked),
                          revoked_by=revoked_by.get(r.attack_id),
                          groups=groups.get(r.attack_id) or _stated_groups(r.extra))
            if r.attack_id in techniques and techniques[r.attack_id].active:
                continue  # one id on two objects: the live one stands for it
            techniques[r.attack_id] = t
    built = Catalog(domain=domain, version=version, name=row.name, tactics=tactics,
                    techniques=techniques)
    with _CACHE_LOCK:
        if len(_CACHE) >= 8:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[stamp] = built
    return built


_CACHE: dict[tuple, Catalog] = {}
_CACHE_LOCK = threading.Lock()


def _stated_groups(extra) -> int:
    """The group count a release states per technique when it has no intrusion sets (the
    default catalog: bastion/coverage/data/attack_enterprise.yaml)."""
    value = extra.get("groups") if isinstance(extra, dict) else None
    return value if isinstance(value, int) else 0


def load_active(bind: Engine | Connection, domain: str = "enterprise") -> Catalog:
    """The domain's active release as a Catalog, with the other domains' active releases in
    its `others`: ids of every domain then resolve in their own (T0xxx in ICS, a Mobile id in
    Mobile) — what detection imports check tags against."""
    with _reading(bind) as conn:
        main = dataclasses.replace(load(conn, domain), others={})  # the cached one stays as it is
        for other in ATTACK_DOMAINS:
            if other != domain and active_version(conn, other) is not None:
                main.others[other] = load(conn, other)
    return main


def objects(bind: Engine | Connection, domain: str, version: str,
            types: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The stored objects of a release (of some STIX types), e.g. detection strategies and
    analytics with their log sources in `extra`."""
    o = attack_object
    stmt = select(o).where(o.c.domain == domain, o.c.version == version)
    if types is not None:
        stmt = stmt.where(o.c.type.in_(list(types)))
    with _reading(bind) as conn:
        return [{c: getattr(r, c) for c in OBJECT_COLUMNS}
                for r in conn.execute(stmt.order_by(o.c.type, o.c.attack_id, o.c.stix_id))]


def relations(bind: Engine | Connection, domain: str, version: str,
              kind: str | None = None) -> list[tuple[str, str, str]]:
    """The stored relations of a release as (source, kind, target) STIX ids."""
    r = attack_relation
    stmt = select(r.c.source, r.c.kind, r.c.target).where(r.c.domain == domain, r.c.version == version)
    if kind is not None:
        stmt = stmt.where(r.c.kind == kind)
    with _reading(bind) as conn:
        return [tuple(x) for x in conn.execute(stmt.order_by(r.c.source, r.c.kind, r.c.target))]


class AttackCatalogs:
    """The stored ATT&CK releases of a database: `Store.attack` (administration; reads and
    writes on the engine as the connecting role). A tenant reads a release as a Catalog in its
    own transaction through `TenantStore.coverage.catalog(domain)`."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def releases(self, domain: str | None = None) -> list[Release]:
        """Every stored release (of one domain), by domain then newest version first."""
        return releases(self._engine, domain)

    def release(self, domain: str, version: str) -> Release | None:
        return release(self._engine, domain, version)

    def active_version(self, domain: str = "enterprise") -> str | None:
        """The version of the domain's active release, None when it has none."""
        return active_version(self._engine, domain)

    def load(self, domain: str = "enterprise", version: str | None = None) -> Catalog:
        """A release as a Catalog (the domain's active one when `version` is None)."""
        return load(self._engine, domain, version)

    def replace_release(self, release: Release, objects: Iterable[dict[str, Any]],
                        relations: Iterable[tuple[str, str, str]], activate: bool) -> Release:
        """Store a release with its objects and relations, all or nothing (see
        `replace_release`)."""
        return replace_release(self._engine, release, objects, relations, activate)

    def set_active(self, domain: str, version: str) -> Release:
        """Make a stored release the active one of its domain."""
        return set_active(self._engine, domain, version)
