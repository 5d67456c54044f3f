"""The tenant-scoped query layer: every statement on a tenant table is built here or from
`Scope.where`, which adds `tenant_id = :tenant` — the only tenant guard SQLite has, and the
first of two on PostgreSQL (row-level security is the second)."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import orjson
from sqlalchemy import (BigInteger, Connection, Engine, String, and_, any_, func, literal, select,
                        text, tuple_, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.sql import ColumnElement

from bastion.store.engine import APP_ROLE, Holder, busy, first_wait, resolve_lock_timeout
from bastion.store.tables import (TENANT_TABLES, edge, event_commit, graph_stats, import_run, node,
                                  tenant)

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout ran out

# Ids travel as one array/JSON parameter, so a chunk only bounds the size of one statement.
CHUNK = 20000


def chunks(items: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@dataclass
class Pending:
    """What a write transaction leaves for its end (Scope.transaction): its events' transaction
    id and how many it wrote, the changes to graph_stats' counts, and what wants the event
    counter as the transaction left it. Done last, so that the counter and the per-kind count
    rows are held only while the transaction commits, never while it runs."""

    txn: int | None = None
    events: int = 0
    holds_writes: bool = False  # the tenant's write lock (Scope.hold_writes) is taken
    counts: Counter = field(default_factory=Counter)
    at_commit: list[Callable[[Connection, int], None]] = field(default_factory=list)


PENDING = "bastion_pending"


def pending(conn: Connection) -> Pending:
    """The open write transaction's Pending (Scope.transaction(write=True) made it)."""
    found = conn.info.get(PENDING)
    assert found is not None, "not in a write transaction of Scope.transaction(write=True)"
    return found


def bind_tenant(conn: Connection, tenant_id: int | None = None, *, name: str | None = None) -> int | None:
    """PostgreSQL: run the transaction as the application role, bound to one tenant (by id, or
    by name: None when there is no such tenant). The binding cannot be changed until the
    transaction ends."""
    conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
    if name is not None:
        return conn.execute(text("SELECT bastion_set_tenant_named(:n)"), {"n": name}).scalar_one()
    return conn.execute(text("SELECT bastion_set_tenant(:t)"), {"t": tenant_id}).scalar_one()


@dataclass(frozen=True)
class Scope:
    """One tenant's view of the store."""

    engine: Engine
    tenant_id: int

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def where(self, table) -> ColumnElement[bool]:
        assert table in TENANT_TABLES, f"{table.name} is not a tenant table"
        return table.c.tenant_id == self.tenant_id

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Connection]:
        """A transaction bound to this tenant; on PostgreSQL it runs as the non-owner role and
        is bound once to the tenant by a trusted function, so row-level security applies to
        every statement and a second tenant cannot be chosen in it (docs/security.md).

        A write transaction waits for the write lock at most the lock timeout (the engine's
        `bastion_lock_timeout`), telling `bastion_on_wait` whom it waits for, then raises Busy
        (SQLite: at BEGIN IMMEDIATE, engine._sqlite_begin; PostgreSQL: every lock wait is bounded
        by `lock_timeout`, the tenant's write lock's in `hold_writes`)."""
        opts: dict = {"bastion_write": write}
        if write and not self.postgres:
            opts["bastion_waiting"] = self._waiting
        with self.engine.connect().execution_options(**opts) as conn, conn.begin():
            if self.postgres:
                bind_tenant(conn, self.tenant_id)
                if write:
                    self._set_lock_timeout(conn, self._timeout(conn))
                else:
                    # The binding is a row in a temporary table: a read's commit need not wait
                    # for its WAL flush (3.3 ms of every read; nothing durable is written).
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            if write:
                conn.info[PENDING] = Pending()
            try:
                yield conn
                if write:
                    self._finish(conn, conn.info[PENDING])
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                raise busy(None, self._timeout(conn)) from None
            finally:
                conn.info.pop(PENDING, None)

    def _timeout(self, conn: Connection) -> float:
        return conn.get_execution_options().get("bastion_lock_timeout") or resolve_lock_timeout()

    @staticmethod
    def _set_lock_timeout(conn: Connection, seconds: float) -> None:
        conn.execute(text("SELECT set_config('lock_timeout', :t, true)"),
                     {"t": f"{max(1, int(seconds * 1000))}ms"})

    def running_import(self, conn: Connection) -> Holder | None:
        """The tenant's import run that is running (the latest started), as a writer waiting for
        it names it."""
        row = conn.execute(
            select(import_run.c.id, import_run.c.options, import_run.c.actor, import_run.c.started_at)
            .where(self.where(import_run), import_run.c.status == "running")
            .order_by(import_run.c.started_at.desc(), import_run.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        kind = (row.options or {}).get("kind") or "scan"  # as bastion.store.runs reads it
        return Holder(row.id, kind, row.actor, row.started_at)

    def _waiting(self, timeout: float) -> Holder | None:
        """SQLite: a writer starts to wait for the write lock: who holds it (read on a connection
        of its own: reads never wait), told to the engine's `bastion_on_wait`."""
        with self.engine.connect() as conn, conn.begin():
            holder = self.running_import(conn)
        on_wait = self.engine.get_execution_options().get("bastion_on_wait")
        if on_wait is not None:
            on_wait(holder, timeout)
        return holder

    def hold_writes(self, conn: Connection) -> None:
        """Take the tenant's write lock for the rest of the transaction: writers that read many
        rows before writing (imports, enrichment, settings, key and subscription changes)
        serialize here. A change of entities that exist already (an analyst's decision) does
        not take it: it locks its rows (`FOR UPDATE`), so it never waits for an import that
        does not touch them. SQLite has one write lock per database, taken at BEGIN.
        On PostgreSQL the wait is bounded: after a short first wait the engine's
        `bastion_on_wait` is told which import holds it; after the lock timeout, Busy."""
        p = pending(conn)
        if not self.postgres or p.holds_writes:
            return
        self.bounded(conn, lambda: conn.execute(text("SELECT bastion_hold_writes()")))
        p.holds_writes = True

    def bounded(self, conn: Connection, step: Callable[[], object]):
        """PostgreSQL: run `step` (a statement that may wait for a lock) waiting first briefly,
        then, told to `bastion_on_wait` with the running import, up to the lock timeout; then
        Busy naming that import. SQLite: `step` (its writers wait at BEGIN IMMEDIATE)."""
        if not self.postgres:
            return step()
        timeout = self._timeout(conn)
        first = first_wait(timeout)
        done, out = self._try(conn, step, first, timeout)
        if not done:
            holder = self.running_import(conn)
            on_wait = conn.get_execution_options().get("bastion_on_wait")
            if on_wait is not None:
                on_wait(holder, timeout)
            done, out = self._try(conn, step, timeout - first, timeout)
            if not done:
                raise busy(holder, timeout)
        return out

    def _try(self, conn: Connection, step: Callable[[], object], seconds: float,
             timeout: float) -> tuple[bool, object]:
        """`step` waiting at most `seconds` (in a savepoint, so that running out leaves the
        transaction usable): (False, None) when it ran out."""
        try:
            with conn.begin_nested():
                self._set_lock_timeout(conn, seconds)
                out = step()
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            return False, None
        finally:
            self._set_lock_timeout(conn, timeout)  # a released savepoint keeps the short one
        return True, out

    # -- event numbers --------------------------------------------------------------------------

    def event_txn(self, conn: Connection) -> int:
        """This write transaction's id in the event log (taken at its first event)."""
        p = pending(conn)
        if p.txn is None:
            if self.postgres:
                p.txn = conn.execute(text("SELECT bastion_begin_events()")).scalar_one()
            else:  # one writer at a time: the next id is free
                p.txn = conn.execute(select(func.coalesce(func.max(event_commit.c.txn), 0) + 1)
                                     .where(self.where(event_commit))).scalar_one()
        return p.txn

    def _finish(self, conn: Connection, p: Pending) -> None:
        """The end of a write transaction: graph_stats' counts, then the event counter — taken
        last and held only for this (the holder waits for nothing else, so no deadlock)."""
        rows = [{"tenant_id": self.tenant_id, "name": k, "count": n}
                for k, n in sorted(p.counts.items()) if n]
        if rows:
            upsert = (pg_insert if self.postgres else sqlite_insert)(graph_stats)
            conn.execute(upsert.on_conflict_do_update(
                index_elements=["tenant_id", "name"],
                set_={"count": graph_stats.c.count + upsert.excluded["count"]}), rows)
        if not p.events and not p.at_commit:
            return
        if self.postgres:
            top = self.bounded(conn, lambda: conn.execute(text("SELECT bastion_commit_events()")).scalar_one())
        else:
            top = conn.execute(update(tenant).where(tenant.c.id == self.tenant_id)
                               .values(event_seq=tenant.c.event_seq + p.events)
                               .returning(tenant.c.event_seq)).scalar_one()
            if p.events:
                conn.execute(event_commit.insert().values(tenant_id=self.tenant_id, txn=p.txn,
                                                          base=top - p.events, last=top))
        p.txn, p.events = None, 0
        for fn in p.at_commit:
            fn(conn, top)

    # -- statements shared by reads and writes ------------------------------------------------

    def id_in(self, column, ids: Sequence[int]) -> ColumnElement[bool]:
        """`column IN ids` as ONE bind parameter (an array on PostgreSQL, a JSON array read by
        json_each on SQLite): thousands of ids without thousands of placeholders to render."""
        if self.postgres:
            return column == any_(literal(list(ids), ARRAY(BigInteger)))
        each = func.json_each(literal(orjson.dumps(list(ids)).decode())).table_valued("value")
        return column.in_(select(each.c.value))

    def nodes_by_id(self, ids: Sequence[int], *cols):
        return select(*cols).where(self.where(node), self.id_in(node.c.id, ids))

    def edge_match(self, idents: Sequence[tuple[int, str, int]]) -> tuple[list, ColumnElement[bool]]:
        """(extra FROM items, condition) selecting the edges with these (source, kind, target),
        the identities passed as one parameter per column (PostgreSQL arrays joined with
        unnest) or one JSON parameter (SQLite); a long row-value IN list would be planned as an
        OR chain by PostgreSQL and cost a placeholder per value on both."""
        if not self.postgres:
            each = func.json_each(literal(orjson.dumps(list(idents)).decode())).table_valued("value")
            wanted = select(func.json_extract(each.c.value, "$[0]"), func.json_extract(each.c.value, "$[1]"),
                            func.json_extract(each.c.value, "$[2]"))
            return [], tuple_(edge.c.source_id, edge.c.kind, edge.c.target_id).in_(wanted)
        s, k, t = (list(x) for x in zip(*idents))
        wanted = func.unnest(literal(s, ARRAY(BigInteger)), literal(k, ARRAY(String)),
                             literal(t, ARRAY(BigInteger))).table_valued("s", "k", "t").render_derived(name="wanted")
        cond = and_(edge.c.source_id == wanted.c.s, edge.c.kind == wanted.c.k,
                    edge.c.target_id == wanted.c.t)
        return [wanted], cond

    def edges_by_ident(self, idents: Sequence[tuple[int, str, int]], *cols):
        extra, cond = self.edge_match(idents)
        return select(*cols).select_from(edge, *extra).where(self.where(edge), cond)

    def edges_touching(self, ids: Sequence[int], *cols):
        return select(*cols).where(
            self.where(edge), self.id_in(edge.c.source_id, ids) | self.id_in(edge.c.target_id, ids)
        )


def insert_numbered(scope: "Scope", table, what: str, **values) -> int:
    """Insert one row of `table` whose id is the tenant's next number (max + 1), in a transaction
    of its own; two writers picking the same number at once retry. `what` names it in the error."""
    for _attempt in range(5):
        try:
            with scope.transaction(write=True) as conn:
                next_id = conn.execute(select(func.coalesce(func.max(table.c.id), 0) + 1)
                                       .where(scope.where(table))).scalar_one()
                conn.execute(table.insert().values(tenant_id=scope.tenant_id, id=next_id, **values))
            return next_id
        except IntegrityError:
            continue
    raise RuntimeError(f"could not allocate {what} id")
