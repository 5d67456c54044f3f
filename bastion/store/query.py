"""The tenant-scoped query layer: every statement on a tenant table is built here or from
`Scope.where`, which adds `tenant_id = :tenant` — the only tenant guard SQLite has, and the
first of two on PostgreSQL (row-level security is the second)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import orjson
from sqlalchemy import (BigInteger, Connection, Engine, String, and_, any_, func, literal, select,
                        text, tuple_, update)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.sql import ColumnElement

from bastion.store.engine import APP_ROLE, Holder, busy, first_wait, resolve_lock_timeout
from bastion.store.tables import TENANT_TABLES, edge, import_run, node, tenant

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout ran out

# Ids travel as one array/JSON parameter, so a chunk only bounds the size of one statement.
CHUNK = 20000


def chunks(items: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


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
        by `lock_timeout`, the counter's in `lock_event_seq`)."""
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
            try:
                yield conn
            except OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                raise busy(None, self._timeout(conn)) from None

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

    def lock_event_seq(self, conn: Connection) -> int:
        """Lock the tenant's event counter (writers of the tenant serialize here) and read it.
        On PostgreSQL the wait is bounded: after a short first wait the engine's
        `bastion_on_wait` is told which import holds it; after the lock timeout, Busy."""
        if self.postgres:  # the application role may not update `tenant` itself
            timeout = self._timeout(conn)
            first = first_wait(timeout)
            seq = self._pg_lock_seq(conn, first, timeout)
            if seq is None:
                holder = self.running_import(conn)
                on_wait = conn.get_execution_options().get("bastion_on_wait")
                if on_wait is not None:
                    on_wait(holder, timeout)
                seq = self._pg_lock_seq(conn, timeout - first, timeout)
                if seq is None:
                    raise busy(holder, timeout)
            return seq
        return conn.execute(
            update(tenant).where(tenant.c.id == self.tenant_id)
            .values(event_seq=tenant.c.event_seq).returning(tenant.c.event_seq)).scalar_one()

    def _pg_lock_seq(self, conn: Connection, seconds: float, timeout: float) -> int | None:
        """`bastion_lock_seq()` waiting at most `seconds` (in a savepoint, so that running out
        leaves the transaction usable); None when it ran out."""
        try:
            with conn.begin_nested():
                self._set_lock_timeout(conn, seconds)
                seq = conn.execute(text("SELECT bastion_lock_seq()")).scalar_one()
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            return None
        self._set_lock_timeout(conn, timeout)  # a released savepoint keeps the short one
        return seq

    def reserve_event_seq(self, conn: Connection, n: int) -> int:
        """Take the next `n` numbers of the tenant's event counter, before the events that use
        them are inserted (on PostgreSQL a trigger refuses events outside what the transaction
        reserved); returns the last of them."""
        if self.postgres:
            return conn.execute(text("SELECT bastion_reserve_seq(:n)"), {"n": n}).scalar_one()
        return conn.execute(
            update(tenant).where(tenant.c.id == self.tenant_id)
            .values(event_seq=tenant.c.event_seq + n).returning(tenant.c.event_seq)).scalar_one()

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
