"""The documents a database team expects, checked fresh, and the schema check for running
distributed by tenant (Citus): every primary key, unique constraint and foreign key of a tenant
table includes tenant_id — in the declared metadata and in the migrated database, both engines."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Index, UniqueConstraint, inspect

from bastion.ops import erd
from bastion.store.tables import metadata

DOCS = Path(__file__).parent.parent.parent / "docs"


def test_er_diagram_is_fresh():
    assert (DOCS / "er-diagram.md").read_text() == erd.render(), \
        "docs/er-diagram.md is stale: python -m bastion.ops.erd > docs/er-diagram.md"


def test_er_diagram_draws_every_table_key_and_foreign_key():
    text = erd.render()
    blocks = dict(re.findall(r"\n    (\w+) \{\n(.*?)\n    \}", text, re.S))
    assert set(blocks) == set(metadata.tables)
    for table in metadata.tables.values():
        pk = {c.name for c in table.primary_key.columns}
        drawn = {m.group(1): m.group(2) or "" for m in re.finditer(r"\n\s+\w+ (\w+)( [A-Z, ]+)?", "\n" + blocks[table.name])}
        assert set(drawn) == {c.name for c in table.columns}, table.name
        assert {c for c, keys in drawn.items() if "PK" in keys} == pk, table.name
        for fk in table.foreign_key_constraints:
            cols = ", ".join(c.parent.name for c in fk.elements)
            assert re.search(rf"\n    {fk.referred_table.name} \|[|o]--o[|{{] {table.name} : \"{cols}\"",
                             text), (table.name, cols)


def tenant_key_violations(tables) -> list[str]:
    """Keys of tenant tables (those with a tenant_id column) that leave tenant_id out."""
    bad = []
    for t in tables:
        if "tenant_id" not in t["columns"]:
            continue
        for kind, cols in t["keys"]:
            if "tenant_id" not in cols:
                bad.append(f"{t['name']}: {kind} ({', '.join(cols)})")
    return bad


def declared():
    for t in metadata.tables.values():
        keys = [("primary key", [c.name for c in t.primary_key.columns])]
        keys += [("unique", [c.name for c in k.columns]) for k in t.constraints
                 if isinstance(k, UniqueConstraint)]
        keys += [("unique index", [c.name for c in i.columns]) for i in t.indexes
                 if isinstance(i, Index) and i.unique]
        keys += [("foreign key", [c.parent.name for c in k.elements]) for k in t.foreign_key_constraints]
        yield {"name": t.name, "columns": {c.name for c in t.columns}, "keys": keys}


def reflected(engine):
    insp = inspect(engine)
    for name in insp.get_table_names():
        keys = [("primary key", insp.get_pk_constraint(name)["constrained_columns"])]
        keys += [("unique", u["column_names"]) for u in insp.get_unique_constraints(name)]
        keys += [("unique index", i["column_names"]) for i in insp.get_indexes(name) if i["unique"]]
        keys += [("foreign key", f["constrained_columns"]) for f in insp.get_foreign_keys(name)]
        yield {"name": name, "columns": {c["name"] for c in insp.get_columns(name)}, "keys": keys}


def test_every_key_of_a_tenant_table_includes_tenant_id_in_the_declared_schema():
    assert tenant_key_violations(declared()) == []
    assert tenant_key_violations([{"name": "x", "columns": {"tenant_id"},
                                   "keys": [("unique", ["key"])]}]) == ["x: unique (key)"]


def test_every_key_of_a_tenant_table_includes_tenant_id_in_the_migrated_database(store):
    tables = list(reflected(store.engine))
    assert {t["name"] for t in tables} >= set(metadata.tables)
    assert tenant_key_violations(tables) == []
