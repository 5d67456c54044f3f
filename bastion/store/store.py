"""The library's entry point: `Store(url)` for administration, `store.tenant(name)` for data."""

from __future__ import annotations

import base64
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Sequence, Union

import orjson
from sqlalchemy import and_, case, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from bastion.errors import InvalidValue, NotFound
from bastion.schema.batch import Batch, PreparedBatch
from bastion.schema.keys import kind_of, node_id
from bastion.schema.kinds import REGISTRY, RISK_STATES
from bastion.schema.registry import FieldType
from bastion.store import access, eventlog, filters, migrate, writer
from bastion.store.engine import make_engine
from bastion.store.query import Scope, bind_tenant, chunks
from bastion.store.tables import edge, node, tenant, typed

DEFAULT_TENANT = "default"

# A list filter: expressions (`["severity>=high", "~ssh"]`, bastion.store.filters), a parsed
# `Filter`, or the older mapping `{field: value or [any of values]}`.
Where = Union[Sequence[str], Mapping[str, Any], "filters.Filter", None]


@dataclass(frozen=True)
class Tenant:
    id: int
    name: str
    display_name: str | None
    created_at: datetime


@dataclass(frozen=True)
class Record:
    """An entity as stored now (or rebuilt for a past instant)."""

    key: str
    kind: str
    version: int
    values: dict[str, Any]
    properties: dict[str, Any] | None
    first_seen: datetime | None
    last_seen: datetime | None
    updated_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        # `entity_version`, as in events: technologies and capabilities have a `version` field.
        return {"key": self.key, "kind": self.kind, "entity_version": self.version, **self.values,
                "properties": self.properties, "first_seen": self.first_seen,
                "last_seen": self.last_seen, "updated_at": self.updated_at}


@dataclass(frozen=True)
class Event:
    seq: int
    occurred_at: datetime
    entity_key: str
    entity_kind: str
    entity_version: int | None
    event_type: str
    diff: dict[str, Any]
    actor: str
    source: str
    correlation_id: str
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Page:
    records: list[Record]
    next_cursor: str | None  # pass as `after=` for the next page; None on the last page


@dataclass(frozen=True)
class Link:
    relationship: str
    source: str
    target: str
    properties: dict[str, Any] | None
    first_seen: datetime
    last_seen: datetime


class Store:
    """A Bastion database on SQLite or PostgreSQL."""

    def __init__(self, url: str | None = None, *, echo: bool = False, create: bool = True,
                 lock_timeout: float | None = None, on_wait=None):
        """`create=False` refuses a SQLite file that does not exist instead of creating it.
        `lock_timeout` (seconds; default BASTION_LOCK_TIMEOUT, else 30) bounds a writer's wait for
        the tenant's write lock, then Busy; `on_wait(holder, timeout)` is called once when a
        writer starts to wait (bastion.store.engine.make_engine)."""
        self.engine = make_engine(url, echo=echo, create=create, lock_timeout=lock_timeout,
                                  on_wait=on_wait)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    @property
    def attack(self):
        """The stored ATT&CK releases: list, import, activate, load (bastion.store.catalog)."""
        from bastion.store.catalog import AttackCatalogs

        return AttackCatalogs(self.engine)

    # -- schema administration (migrate.py, access.py): what init, db and a server's readiness use

    @property
    def database(self) -> str:
        """Where the data is: the SQLite file's path, or the URL without its password."""
        return self.engine.url.database if self.dialect == "sqlite" else self.url

    def revision(self) -> str | None:
        return migrate.current(self.engine)

    def upgrade(self, revision: str = "head") -> None:
        migrate.upgrade(self.engine, revision)

    def downgrade(self, revision: str = "-1", *, force: bool = False, actor: str = "bastion"):
        """Refused with LossyDowngrade when it would destroy data, unless `force` (migrate.py)."""
        return migrate.downgrade(self.engine, revision, force=force, actor=actor)

    def require_head(self, where: str | None = None) -> None:
        migrate.require_head(self.engine, where or self.url)

    def require_owner(self, command: str) -> None:
        access.require_owner(self.engine, command)

    def apply_grants(self, command: str = "bastion db grants"):
        """PostgreSQL: the application role's grants, policies and functions; None on SQLite."""
        return access.apply_grants(self.engine, command)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- tenants (administration: runs as the connecting role, not under row-level security) --

    def add_tenant(self, name: str, display_name: str | None = None) -> Tenant:
        name = (name or "").strip().lower()
        if not name or len(name) > 63 or not all(c.isalnum() or c in "-_" for c in name):
            raise InvalidValue(f"invalid tenant name {name!r}: use 1-63 letters, digits, '-' or '_'")
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(tenant).values(
                    name=name, display_name=display_name, created_at=datetime.now(timezone.utc)))
        except IntegrityError:
            raise InvalidValue(f"tenant {name!r} already exists") from None
        return self._tenant_row(name)

    def ensure_tenant(self, name: str = DEFAULT_TENANT) -> Tenant:
        try:
            return self._tenant_row(name)
        except NotFound:
            return self.add_tenant(name)

    def event_counters(self) -> dict[int, int]:
        """Each tenant's event counter (events written so far), as far as the connecting role
        may see tenants (metrics)."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(tenant.c.id, tenant.c.event_seq)).all())

    def tenants(self) -> list[Tenant]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(tenant).order_by(tenant.c.name)).all()
        return [Tenant(r.id, r.name, r.display_name, r.created_at) for r in rows]

    def _tenant_row(self, name: str) -> Tenant:
        name = (name or "").strip().lower()
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Resolve the name under the application role, so a login that is only a
                # member of it can do so: the transaction is bound to that tenant, whose
                # row alone the tenant policy shows.
                bind_tenant(conn, name=name)
            row = conn.execute(select(tenant).where(tenant.c.name == name)).first()
        if row is None:
            raise NotFound(f"no tenant named {name!r} (see `bastion tenant list`)")
        return Tenant(row.id, row.name, row.display_name, row.created_at)

    def tenant(self, name: str = DEFAULT_TENANT) -> "TenantStore":
        return TenantStore(Scope(self.engine, self._tenant_row(name).id), name)

    def tenant_by_id(self, tenant_id: int, name: str = "") -> "TenantStore":
        """A tenant known by id (an authenticated API key's): no lookup; row-level security
        still binds every transaction to it."""
        return TenantStore(Scope(self.engine, tenant_id), name or str(tenant_id))

    def authenticator(self):
        """Checks API keys for the server (bastion.store.keys.Authenticator)."""
        from bastion.store.keys import Authenticator

        return Authenticator(self.engine)


def _record(kind: str, row) -> Record:
    # By column, not name: a kind's field may share a name with a node column (`version`).
    m = row._mapping
    table = typed[kind]
    values = {n: m[table.c[n]] for n in REGISTRY.entity(kind).field_names}
    return Record(m[node.c.key], kind, m[node.c.version], values, m[node.c.properties],
                  m[node.c.first_seen], m[node.c.last_seen], m[node.c.updated_at])


def _with_node(kind: str):
    table = typed[kind]
    return select(node, table).join(
        table, (table.c.tenant_id == node.c.tenant_id) & (table.c.node_id == node.c.id))


_NODE_COLS = (node.c.key, node.c.version, node.c.properties, node.c.first_seen, node.c.last_seen,
              node.c.updated_at)


def _get_many(scope: Scope, conn, keys: Sequence[str], times: bool = True,
              lock: bool = False) -> dict[str, Record]:
    """`times=False` leaves first/last seen and updated out (None): an importer's merge needs
    only values, and converting three timestamps per row was a fifth of a re-import. `lock`:
    the rows stay locked until the transaction ends (a write that depends on this read)."""
    by_kind: dict[str, set[int]] = {}
    for key in keys:
        by_kind.setdefault(kind_of(key), set()).add(node_id(key))
    wanted = set(keys)
    found: dict[str, Record] = {}
    for kind, ids in by_kind.items():
        table = typed[kind]
        names = REGISTRY.entity(kind).field_names
        cols = _NODE_COLS if times else _NODE_COLS[:3]
        n = len(cols)
        stmt = select(*cols, *(table.c[f] for f in names)).join(
            table, (table.c.tenant_id == node.c.tenant_id) & (table.c.node_id == node.c.id))
        for chunk in chunks(sorted(ids)):
            # Rows by position: a bulk read (an importer's merge) spends most of its time here.
            for row in _read(scope, conn, stmt.where(scope.where(node), scope.id_in(node.c.id, chunk)),
                             lock):
                if row[0] in wanted:
                    when = row[3:6] if times else (None, None, None)
                    found[row[0]] = Record(row[0], kind, row[1], dict(zip(names, row[n:])), row[2],
                                           *when)
    return found


def _read(scope: Scope, conn, stmt, lock: bool):
    """The rows of `stmt`; with `lock`, its nodes locked (PostgreSQL `FOR UPDATE OF node`,
    waiting as long as the lock timeout allows) until the transaction ends: what a write
    depends on cannot change between this read and the write, yet writers of other rows go on.
    SQLite's single writer needs no row lock."""
    if not lock or not scope.postgres:
        return conn.execute(stmt).all()
    locked = stmt.with_for_update(of=node)
    return scope.bounded(conn, lambda: conn.execute(locked).all())


OPEN_RISK_STATES = ("triage", "open")


def _open_risks(scope: Scope):
    risk = typed["risk"]
    return _with_node("risk").where(scope.where(node), risk.c.status.in_(OPEN_RISK_STATES))


class WriteSession:
    """Batches applied in one transaction (`TenantStore.writing()`), with the reads an importer
    needs to merge against what the same transaction already wrote."""

    def __init__(self, scope: Scope, conn, actor: str, source: str, correlation_id: str, at: datetime):
        self.scope, self.conn = scope, conn
        self.actor, self.source, self.correlation_id, self.at = actor, source, correlation_id, at

    @property
    def coverage(self):
        """The detection inventory reads and snapshot writes of an import, in this transaction
        (bastion.store.snapshots.SessionCoverage)."""
        from bastion.store.snapshots import SessionCoverage

        return SessionCoverage(self)

    @property
    def runs(self):
        """The imported files of an import, in this transaction (bastion.store.runs.SessionRuns)."""
        from bastion.store.runs import SessionRuns

        return SessionRuns(self.scope, self.conn)

    def apply(self, batch: Batch | PreparedBatch, *, observed: bool = True) -> writer.ApplyResult:
        return writer.apply(self.scope, batch, actor=self.actor, source=self.source,
                            correlation_id=self.correlation_id, at=self.at, conn=self.conn,
                            observed=observed)

    # The reads below are what the session's writes depend on: their rows stay locked until it
    # commits (an analyst's change of one of them waits; of any other row, it does not).

    def get_many(self, keys: Sequence[str], *, times: bool = True) -> dict[str, Record]:
        return _get_many(self.scope, self.conn, keys, times, lock=True)

    def open_risks_not_seen(self, source: str) -> list[Record]:
        """Open (triage/open) risks last reported by `source` and not observed in this session."""
        risk = typed["risk"]
        stmt = (_open_risks(self.scope).where(risk.c.source == source, node.c.last_seen < self.at)
                .order_by(node.c.key))
        return [_record("risk", row) for row in _read(self.scope, self.conn, stmt, True)]

    def risks_with_cve(self, after_key: str | None = None, limit: int = 5000) -> list[Record]:
        """Risks (any status) that name a CVE, in key order, at most `limit` after `after_key`:
        page on by passing the last key back (enrichment; bastion.risks.enrich)."""
        risk = typed["risk"]
        stmt = _with_node("risk").where(self.scope.where(node), risk.c.cve.is_not(None))
        if after_key is not None:
            stmt = stmt.where(node.c.key > after_key)
        stmt = stmt.order_by(node.c.key).limit(limit)
        return [_record("risk", row) for row in _read(self.scope, self.conn, stmt, True)]


def _encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode()


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except Exception:
        raise InvalidValue(f"invalid page cursor {cursor!r}") from None


def _entity_kind(kind: str):
    ek = REGISTRY.node_kinds.get(kind)
    if ek is None:
        raise InvalidValue(f"unknown kind {kind!r}; kinds: {', '.join(REGISTRY.node_kinds)}")
    return ek


class TenantStore:
    """Reads and writes of one tenant. Every statement is scoped to it."""

    def __init__(self, scope: Scope, name: str):
        self.scope = scope
        self.name = name

    @property
    def tenant_id(self) -> int:
        return self.scope.tenant_id

    def graph(self, limits=None):
        """Graph queries (neighbors, reach, paths, attack paths …) of this tenant."""
        from bastion.store.exposure import Graph

        return Graph(self.scope, limits)

    @property
    def coverage(self):
        """Coverage reads, snapshots and the ATT&CK catalog as this tenant reads it
        (bastion.store.coverage.CoverageStore)."""
        from bastion.store.coverage import CoverageStore

        return CoverageStore(self.scope)

    @property
    def runs(self):
        """Import runs of every kind: start, finish, list, get (bastion.store.runs.ImportRuns)."""
        from bastion.store.runs import ImportRuns

        return ImportRuns(self.scope)

    @property
    def keys(self):
        """The tenant's API keys: create, list, get, revoke (bastion.store.keys.Keys)."""
        from bastion.store.keys import Keys

        return Keys(self.scope)

    @property
    def feed(self):
        """The tenant's webhook subscriptions, delivery log and relay cursors
        (bastion.store.feed.Feed)."""
        from bastion.store.feed import Feed

        return Feed(self.scope)

    def settings(self) -> dict[str, Any]:
        """The tenant's settings (SLA days, the state new risks start in …) by name."""
        from bastion.store import runs

        return runs.settings(self.scope)

    def set_setting(self, name: str, value: Any, *, actor: str, source: str,
                    merge: bool = False) -> bool:
        """Store a setting (None removes it) with its `setting.changed` event; False if it was
        already so. `merge`: a mapping merged over the stored one in the same transaction."""
        from bastion.store import runs

        return runs.set_setting(self.scope, name, value, actor=actor, source=source, merge=merge)

    # -- writes -----------------------------------------------------------------------------

    def apply(self, batch: Batch | PreparedBatch, *, actor: str, source: str,
              correlation_id: str | None = None, at: datetime | None = None,
              observed: bool = True) -> writer.ApplyResult:
        """Apply a batch all-or-nothing; see bastion.store.writer."""
        return writer.apply(self.scope, batch, actor=actor, source=source,
                            correlation_id=correlation_id, at=at, observed=observed)

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: str, *, as_of: datetime | None = None) -> Record | None:
        """The entity `key` names, or None; a key spelled other than the write path spells it
        (`#asset#WWW.Example.com#WWW.Example.com`) finds the entity under its canonical key."""
        rec = self._get(key, as_of)
        if rec is None:
            canonical = _canonical(key)
            if canonical != key:
                rec = self._get(canonical, as_of)
        return rec

    def _get(self, key: str, as_of: datetime | None) -> Record | None:
        kind = kind_of(key)
        if as_of is not None:
            return self._as_of(key, kind, as_of)
        table = typed[kind]
        stmt = (select(node, table).join(table, (table.c.tenant_id == node.c.tenant_id)
                                         & (table.c.node_id == node.c.id))
                .where(self.scope.where(node), node.c.id == node_id(key), node.c.key == key))
        with self.scope.transaction() as conn:
            row = conn.execute(stmt).first()
        return self._record(kind, row) if row is not None else None

    def get_many(self, keys: Sequence[str]) -> dict[str, Record]:
        """The stored entities among `keys` (missing ones are left out): one primary-key
        lookup per kind and chunk, the ids passed as one parameter."""
        with self.scope.transaction() as conn:
            return _get_many(self.scope, conn, keys)

    @contextmanager
    def writing(self, *, actor: str, source: str, correlation_id: str | None = None,
                at: datetime | None = None) -> Iterator["WriteSession"]:
        """Several batches in one transaction: all of them are written, or none (an exception
        inside the block rolls everything back). Reads in the session see its own writes.

        The session takes the tenant's write lock before anything else (writers that read
        before they write serialize there) and its reads lock the rows they return, so a change
        another writer committed before is read and none can commit in between (a bounded wait:
        Busy); its events are numbered when it commits."""
        cid = correlation_id or writer.new_correlation_id()
        at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        with self.scope.transaction(write=True) as conn:
            self.scope.hold_writes(conn)
            yield WriteSession(self.scope, conn, actor, source, cid, at)

    def _record(self, kind: str, row) -> Record:
        return _record(kind, row)

    def overdue_risks(self, cutoffs: dict[str, datetime], limit: int = 1000, *,
                      where: Where = None, after: tuple[datetime, str] | None = None) -> list[Record]:
        """Open risks first seen before their severity's cutoff (now minus its SLA days),
        oldest first, filtered (`where`: see bastion.store.filters); page on with `after`, the
        last one's (first_seen, key)."""
        if not cutoffs:
            return []
        risk = typed["risk"]
        late = or_(*(and_(risk.c.severity == sev, node.c.first_seen < cutoff)
                     for sev, cutoff in cutoffs.items()))
        stmt = _open_risks(self.scope).where(late)
        if flt := filters.parse("risk", where):
            stmt = stmt.where(flt.clause(risk, node, self.scope.postgres))
        if after is not None:
            seen, key = after
            stmt = stmt.where(or_(node.c.first_seen > seen,
                                  and_(node.c.first_seen == seen, node.c.key > key)))
        stmt = stmt.order_by(node.c.first_seen, node.c.key).limit(limit)
        with self.scope.transaction() as conn:
            return [_record("risk", row) for row in conn.execute(stmt)]

    def list(self, kind: str, *, where: Where = None, prefix: str | None = None,
             order_by: str | None = None, descending: bool = False, after: str | None = None,
             limit: int = 100) -> Page:
        """Entities of one kind, filtered (`where`: see bastion.store.filters), sorted by a
        field (ties broken by key), paged by keyset: pass `next_cursor` back as `after`."""
        ek = _entity_kind(kind)
        table = typed[kind]
        if order_by is not None and order_by not in ek.field_names and order_by != "key":
            raise InvalidValue(f"cannot sort {kind} by {order_by!r}")
        if not 1 <= limit <= 10000:
            raise InvalidValue("limit must be between 1 and 10000")
        flt = filters.parse(kind, where)
        sort = node.c.key if order_by in (None, "key") else \
            _sort_by(kind, order_by, descending, open_only=_open_risks_only(flt))
        extra = [sort] if sort is not node.c.key and sort is not table.c[order_by] else []
        base = self._filtered(kind, flt, prefix, select(node, table, *extra))
        keys = [sort] if sort is node.c.key else [sort, node.c.key]
        cur = None
        if after is not None:
            cur = _decode_cursor(after)
            if len(cur) != len(keys):
                raise InvalidValue("page cursor does not match this sort")
        direction = (lambda k: k.desc()) if descending else (lambda k: k.asc())
        with self.scope.transaction() as conn:
            if len(keys) == 1:
                stmt = base if cur is None else base.where(_keyset(keys, cur, descending))
                rows = conn.execute(stmt.order_by(direction(sort)).limit(limit + 1)).all()
            else:
                # NULL sort values last, the same on both engines, in two plain ordered reads
                # (the rows with a value, then those without) that an index on the field can
                # serve, rather than one ORDER BY (sort IS NULL, …) that no index can.
                rows = []
                if cur is None or cur[0] is not None:
                    valued = base.where(sort.is_not(None))
                    if cur is not None:  # bounded on the sort value, so an index seeks to it
                        value, last_key = cur
                        within = sort <= value if descending else sort >= value
                        past = or_(sort < value if descending else sort > value,
                                   node.c.key < last_key if descending else node.c.key > last_key)
                        valued = valued.where(within, past)
                    rows = conn.execute(valued.order_by(direction(sort), direction(node.c.key))
                                        .limit(limit + 1)).all()
                if len(rows) <= limit:
                    nulls = base.where(sort.is_(None))
                    if cur is not None and cur[0] is None:
                        nulls = nulls.where(_keyset(keys, cur, descending))
                    rows += conn.execute(nulls.order_by(direction(node.c.key))
                                         .limit(limit + 1 - len(rows))).all()
        records = [self._record(kind, r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]._mapping
            nxt = _encode_cursor([last[node.c.key]] if len(keys) == 1
                                 else [last[sort], last[node.c.key]])
        return Page(records, nxt)

    def iterate(self, kind: str, *, where: Where = None, prefix: str | None = None,
                order_by: str | None = None, descending: bool = False,
                page_size: int = 1000) -> Iterator[Record]:
        """Every matching entity, page by page through the keyset cursor (one short read
        transaction per page, so memory is bounded by `page_size`): exports."""
        flt = filters.parse(kind, where)  # parsed once: relative times stay fixed across pages
        after = None
        while True:
            page = self.list(kind, where=flt, prefix=prefix, order_by=order_by,
                             descending=descending, after=after, limit=page_size)
            yield from page.records
            if page.next_cursor is None:
                return
            after = page.next_cursor

    def count(self, kind: str, *, where: Where = None,
              prefix: str | None = None, at_most: int | None = None) -> int:
        """How many entities the filter selects; with `at_most`, counting stops there (a page's
        "10,000+" without reading a million rows)."""
        _entity_kind(kind)
        if at_most is not None:
            inner = self._filtered(kind, where, prefix, select(node.c.id).select_from(node))
            stmt = select(func.count()).select_from(inner.limit(at_most).subquery())
        else:
            stmt = self._filtered(kind, where, prefix, select(func.count()).select_from(node))
        with self.scope.transaction() as conn:
            return conn.execute(stmt).scalar_one()

    def count_by(self, kind: str, field: str, *, where: Where = None) -> dict[Any, int]:
        """How many entities of `kind` the filter selects, per value of `field` (one grouped
        statement)."""
        ek = _entity_kind(kind)
        if field not in ek.field_names:
            raise InvalidValue(f"{kind} has no field {field!r}")
        column = typed[kind].c[field]
        stmt = self._filtered(kind, where, None,
                              select(column, func.count()).select_from(node)).group_by(column)
        with self.scope.transaction() as conn:
            return dict(conn.execute(stmt).all())

    def last_seq(self) -> int:
        """The tenant's event counter: it moves with every change, so anything computed from
        the tenant's data may be kept until it moves."""
        with self.scope.transaction() as conn:
            return eventlog.last_seq(self.scope, conn)

    def counts(self) -> dict[str, int]:
        """Entities per kind, and edges per relationship kind."""
        with self.scope.transaction() as conn:
            nodes = dict(conn.execute(select(node.c.kind, func.count()).where(self.scope.where(node))
                                      .group_by(node.c.kind)).all())
            edges = dict(conn.execute(select(edge.c.kind, func.count()).where(self.scope.where(edge))
                                      .group_by(edge.c.kind)).all())
        return {**{k: nodes.get(k, 0) for k in REGISTRY.node_kinds}, **edges}

    def _filtered(self, kind: str, where: Where, prefix: str | None, stmt):
        flt = filters.parse(kind, where)
        table = typed[kind]
        stmt = stmt.join(table, (table.c.tenant_id == node.c.tenant_id) & (table.c.node_id == node.c.id))
        stmt = stmt.where(self.scope.where(node), node.c.kind == kind)
        lo = f"#{kind}#" + (prefix or "")
        if prefix and prefix.startswith("#"):
            lo = prefix
        # A key-prefix filter is a range scan of UNIQUE (tenant_id, key).
        stmt = stmt.where(node.c.key >= lo, node.c.key < lo + "\U0010ffff")
        if flt:
            stmt = stmt.where(flt.clause(table, node, self.scope.postgres))
        return stmt

    def links(self, key: str, direction: str = "both") -> list[Link]:
        """Edges from and/or to an entity, with the other end's key."""
        nid = node_id(key)
        other = node.alias("other")
        out: list[Link] = []
        with self.scope.transaction() as conn:
            for outgoing in ((True, False) if direction == "both" else (direction == "out",)):
                near, far = (edge.c.source_id, edge.c.target_id) if outgoing else (edge.c.target_id, edge.c.source_id)
                stmt = (select(edge, other.c.key.label("other_key"))
                        .join(other, (other.c.tenant_id == edge.c.tenant_id) & (other.c.id == far))
                        .where(self.scope.where(edge), near == nid).order_by(edge.c.kind, other.c.key))
                for r in conn.execute(stmt):
                    src, dst = (key, r.other_key) if outgoing else (r.other_key, key)
                    out.append(Link(r.kind, src, dst, r.properties, r.first_seen, r.last_seen))
        return out

    def history(self, key: str) -> list[Event]:
        """Every event of an entity (edges appear under their source), oldest first; a key
        spelled other than the write path spells it finds the events of its canonical key."""
        events = self._history(key)
        if not events:
            canonical = _canonical(key)
            if canonical != key:
                events = self._history(canonical)
        return events

    def _history(self, key: str) -> list[Event]:
        kind_of(key)
        with self.scope.transaction() as conn:
            return [_event(r) for r in eventlog.history(self.scope, conn, key)]

    def events(self, *, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        """The tenant's event log in order, at most `limit` events after a sequence number (for
        consumers)."""
        with self.scope.transaction() as conn:
            return [_event(r) for r in eventlog.page(self.scope, conn, after=after_seq, limit=limit)]

    def _as_of(self, key: str, kind: str, instant: datetime) -> Record | None:
        """Fold the entity's events up to `instant` into its state then."""
        if instant.tzinfo is None:
            raise InvalidValue("as-of time needs a time zone (e.g. 2026-01-01T00:00:00Z)")
        state: dict[str, Any] | None = None
        version, first, last = 0, None, None
        for ev in self._history(key):
            if ev.occurred_at > instant:
                break
            if ev.entity_kind == "edge":
                continue
            if ev.event_type.endswith(".deleted"):
                state, version = None, ev.entity_version or 0
                continue
            if ev.event_type.endswith(".created"):
                state, first = {}, ev.occurred_at
            if state is None:
                continue
            for name, (_old, new) in ev.diff.items():
                state[name] = new
            version, last = ev.entity_version or version, ev.occurred_at
        if state is None:
            return None
        values = {}
        for f in REGISTRY.entity(kind).fields:
            value = state.get(f.name)
            if f.type is FieldType.DATETIME and isinstance(value, str):
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            values[f.name] = value
        return Record(key, kind, version, values, state.get("properties"), first, last, last)


def _canonical(key: str) -> str:
    try:
        return filters.canonical_key(key)
    except InvalidValue:  # malformed past its kind: nothing stored under any spelling of it
        return key


def _sort_by(kind: str, name: str, descending: bool, open_only: bool = False):
    """What sorting by a field sorts on. Risks by priority: the open ones (triage, open) first,
    then the closed ones (accepted, remediated, deleted), each in priority order (the column
    itself when the filter keeps open risks only: then its index serves the order)."""
    column = typed[kind].c[name]
    if (kind, name) != ("risk", "priority") or open_only:
        return column
    closed = typed[kind].c.status.not_in(OPEN_RISK_STATES)
    return case((closed, column + (-1000 if descending else 1000)), else_=column).label("rank")


def _open_risks_only(flt) -> bool:
    """Whether a risk filter keeps open risks only (status in the open states, or not in any
    closed one)."""
    if flt.kind != "risk":
        return False
    closed = set(RISK_STATES) - set(OPEN_RISK_STATES)
    for c in flt.conditions:
        if c.field == "status" and c.op == "in":
            values = {str(v) for v in c.values}
            if (not c.negated and values <= set(OPEN_RISK_STATES)) or (c.negated and closed <= values):
                return True
    return False


def _keyset(keys, cursor: list[Any], descending: bool):
    """Rows strictly after the cursor's key (sorted by key alone, or among the NULL-sorted rows)."""
    key, last_key = keys[-1], cursor[-1]
    return key < last_key if descending else key > last_key


def _event(r) -> Event:
    """An event row of bastion.store.eventlog (with its `seq`)."""
    diff = r.diff if isinstance(r.diff, dict) else orjson.loads(r.diff)
    return Event(r.seq, r.occurred_at, r.entity_key, r.entity_kind, r.entity_version,
                 r.event_type, diff, r.actor, r.source, r.correlation_id, r.note)

