"""The tenant-scoped query layer: every statement on a tenant table is built here or from
`Scope.where`, which adds `tenant_id = :tenant` — the only tenant guard SQLite has, and the
first of two on PostgreSQL (row-level security is the second)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import orjson
from sqlalchemy import (BigInteger, Connection, Engine, String, and_, any_, func, literal, select,
                        text, tuple_)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import ColumnElement

from bastion.store.engine import APP_ROLE
from bastion.store.tables import TENANT_TABLES, edge, node

# Ids travel as one array/JSON parameter, so a chunk only bounds the size of one statement.
CHUNK = 20000


def chunks(items: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


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
        """A transaction bound to this tenant; on PostgreSQL it runs as the non-owner role
        with `bastion.tenant_id` set, so row-level security applies to every statement."""
        with self.engine.connect().execution_options(bastion_write=write) as conn, conn.begin():
            if self.postgres:
                conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
                conn.execute(select(func.set_config("bastion.tenant_id", str(self.tenant_id), True)))
            yield conn

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
