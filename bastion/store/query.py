"""The tenant-scoped query layer: every statement on a tenant table is built here or from
`Scope.where`, which adds `tenant_id = :tenant` — the only tenant guard SQLite has, and the
first of two on PostgreSQL (row-level security is the second)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

from sqlalchemy import BigInteger, Connection, Engine, String, and_, func, literal, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import ColumnElement

from bastion.store.engine import APP_ROLE
from bastion.store.tables import TENANT_TABLES, edge, node

# Bind parameters per statement stay well under SQLite's 32766 and PostgreSQL's 65535.
CHUNK = 5000


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
    def transaction(self) -> Iterator[Connection]:
        """A transaction bound to this tenant; on PostgreSQL it runs as the non-owner role
        with `bastion.tenant_id` set, so row-level security applies to every statement."""
        with self.engine.begin() as conn:
            if self.postgres:
                conn.execute(text(f"SET LOCAL ROLE {APP_ROLE}"))
                conn.execute(select(func.set_config("bastion.tenant_id", str(self.tenant_id), True)))
            yield conn

    # -- statements shared by reads and writes ------------------------------------------------

    def nodes_by_id(self, ids: Sequence[int], *cols):
        return select(*cols).where(self.where(node), node.c.id.in_(ids))

    def edge_match(self, idents: Sequence[tuple[int, str, int]]) -> tuple[list, ColumnElement[bool]]:
        """(extra FROM items, condition) selecting the edges with these (source, kind, target).

        PostgreSQL plans a long row-value IN list as an OR chain, so there the identities are
        joined as unnest(arrays); SQLite turns the same IN list into an index probe per row."""
        if not self.postgres:
            return [], tuple_(edge.c.source_id, edge.c.kind, edge.c.target_id).in_(idents)
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
            self.where(edge), (edge.c.source_id.in_(ids)) | (edge.c.target_id.in_(ids))
        )
