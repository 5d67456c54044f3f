"""The entity-relationship diagram of the declared schema (docs/er-diagram.md), generated from
the SQLAlchemy metadata (bastion.store.tables): every table with its columns and keys, every
foreign key with its cardinality. `python -m bastion.ops.erd > docs/er-diagram.md` regenerates it;
tests/ops/test_docs.py fails when it is stale."""

from __future__ import annotations

import re

from sqlalchemy import Index, UniqueConstraint

from bastion.store.tables import metadata


def _type(column) -> str:
    name = type(column.type).__name__
    name = {"UTCDateTime": "timestamptz", "LargeBinary": "bytes", "String": "varchar",
            "Variant": "json", "JSON": "json", "BigInteger": "bigint"}.get(name, name.lower())
    return re.sub(r"\W", "", name)


def _unique_sets(table) -> list[set[str]]:
    out = [{c.name for c in k.columns} for k in table.constraints if isinstance(k, UniqueConstraint)]
    out += [{c.name for c in i.columns} for i in table.indexes if isinstance(i, Index) and i.unique]
    return out


def render() -> str:
    tables = sorted(metadata.tables.values(), key=lambda t: t.name)
    lines = ["# Entity-relationship diagram", "",
             "Generated from the declared metadata (`bastion/store/tables.py`) by "
             "`python -m bastion.ops.erd > docs/er-diagram.md`; a test fails when it is stale. "
             "PK: primary key column, FK: in a foreign key, UK: in a unique constraint or index "
             "(partial ones included). A relationship reads parent `||--o{` child: each child row "
             "has exactly one parent (`|o`: at most one, when the key may be NULL), a parent has "
             "any number of children (`o|`: at most one, when the key is also the child's primary "
             "key). `event` has no foreign key on purpose (docs/design.md), and the ATT&CK tables "
             "are shared by every tenant (no `tenant_id`).", "", "```mermaid", "erDiagram"]
    for t in tables:
        pk = {c.name for c in t.primary_key.columns}
        fk = {c.parent.name for k in t.foreign_key_constraints for c in k.elements}
        uk = set().union(*_unique_sets(t)) if _unique_sets(t) else set()
        lines.append(f"    {t.name} {{")
        for c in t.columns:
            keys = [k for k, s in (("PK", pk), ("FK", fk), ("UK", uk)) if c.name in s]
            null = "" if c.nullable is False or c.name in pk else ' "nullable"'
            lines.append(f"        {_type(c)} {c.name}{' ' + ', '.join(keys) if keys else ''}{null}")
        lines.append("    }")
    for t in tables:
        uniques = [{c.name for c in t.primary_key.columns}, *_unique_sets(t)]
        for k in sorted(t.foreign_key_constraints, key=lambda k: (k.referred_table.name, k.name or "")):
            cols = [c.parent for c in k.elements]
            names = {c.name for c in cols}
            parent = "||" if all(c.nullable is False or c.primary_key for c in cols) else "|o"
            child = "o|" if any(names == u for u in uniques) else "o{"
            lines.append(f'    {k.referred_table.name} {parent}--{child} {t.name} : '
                         f'"{", ".join(c.name for c in cols)}"')
    lines += ["```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
