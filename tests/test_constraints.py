"""The database itself accepts exactly what the registry declares, on both engines.

Everything checked here is derived from REGISTRY: value domains, numeric ranges, required
fields, node kinds and the (relationship, source kind, target kind) triples. Rows go in through
raw SQLAlchemy Core inserts, bypassing validation, so only the schema's CHECK, NOT NULL and
foreign-key constraints stand between a bad row and the table. On PostgreSQL `store.engine`
connects as the owner, so row-level security does not apply; that is not what is tested here.

Each attempted insert runs in its own SAVEPOINT on one connection, and each test collects every
mismatch before failing, so a broken constraint is reported with all its consequences at once.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import Field, FieldType
from bastion.store.tables import edge, node, typed

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
NODE_KINDS = tuple(REGISTRY.node_kinds)
TRIPLES = REGISTRY.triples()
DOMAIN_FIELDS = [(k.name, f) for k in REGISTRY.node_kinds.values() for f in k.fields if f.domain]
RANGE_FIELDS = [(k.name, f) for k in REGISTRY.node_kinds.values() for f in k.fields
                if f.ge is not None or f.le is not None]


def test_registry_declares_something_to_check():
    # Guards against a derivation that silently yields nothing and makes the tests below vacuous.
    assert DOMAIN_FIELDS and RANGE_FIELDS and TRIPLES and NODE_KINDS


def _valid(f: Field):
    """A value the registry accepts for a field (its default, first domain value, lower bound)."""
    if f.default is not None:
        return f.default
    if f.domain:
        return f.domain[0]
    if f.type is FieldType.KEY:
        return f"#{f.ref_kinds[0]}#x"
    return {
        FieldType.STR: "x",
        FieldType.INT: int(f.ge) if f.ge is not None else 1,
        FieldType.FLOAT: float(f.ge) if f.ge is not None else 1.0,
        FieldType.BOOL: False,
        FieldType.DATETIME: NOW,
        FieldType.JSON: {"a": 1},
    }[f.type]


def _stored_not_null(f: Field) -> bool:
    # A field with a default is always stored with a value: the write path fills the default.
    return f.required or f.default is not None


class Rows:
    """Raw inserts for one tenant on one connection, each attempt in its own savepoint."""

    def __init__(self, conn, tenant_id: int):
        self.conn = conn
        self.tenant_id = tenant_id
        self._ids = itertools.count(10_000)

    def node(self, kind: str) -> int:
        nid = next(self._ids)
        self.conn.execute(insert(node).values(
            tenant_id=self.tenant_id, id=nid, key=f"#{kind}#n{nid}", kind=kind, version=1,
            content_hash=bytes(16), properties=None, first_seen=NOW, last_seen=NOW, updated_at=NOW))
        return nid

    def attempt(self, table, **values) -> IntegrityError | None:
        """Insert one row in a savepoint; the IntegrityError if the database refused it."""
        try:
            with self.conn.begin_nested():
                self.conn.execute(insert(table).values(tenant_id=self.tenant_id, **values))
        except IntegrityError as exc:
            return exc
        return None

    def typed_row(self, kind: str, **overrides) -> IntegrityError | None:
        """A row of `kind`'s table on a fresh node, valid except for `overrides`."""
        values = {f.name: _valid(f) for f in REGISTRY.entity(kind).fields}
        values.update(overrides)
        return self.attempt(typed[kind], node_id=self.node(kind), **values)

    def edge_row(self, rel: str, source: int, source_kind: str, target: int, target_kind: str):
        return self.attempt(edge, source_id=source, kind=rel, target_id=target,
                            source_kind=source_kind, target_kind=target_kind,
                            properties=None, first_seen=NOW, last_seen=NOW)


@pytest.fixture
def rows(store, tenant):
    with store.engine.connect() as conn:
        outer = conn.begin()
        yield Rows(conn, tenant.tenant_id)
        outer.rollback()


def _names(exc: IntegrityError, *words: str) -> bool:
    """Whether the database's message names all of `words` (constraint or column names), so a
    refusal is known to come from the intended constraint and not from some other mistake."""
    msg = str(exc.orig).lower()
    return all(w.lower() in msg for w in words)


def _bad_values(f: Field) -> list:
    # Near misses: a different case, a suffix, empty; the write path normalizes, the CHECK must not.
    first = f.domain[0]
    return [v for v in (first.upper(), first + "x", "", "not-a-" + first) if v not in f.domain]


def test_domain_checks_accept_exactly_the_declared_values(rows):
    problems = []
    for kind, f in DOMAIN_FIELDS:
        check = f"ck_{kind}_{f.name}_domain"
        for value in f.domain:
            if (exc := rows.typed_row(kind, **{f.name: value})) is not None:
                problems.append(f"{kind}.{f.name}={value!r} refused: {exc.orig}")
        for value in _bad_values(f):
            exc = rows.typed_row(kind, **{f.name: value})
            if exc is None:
                problems.append(f"{kind}.{f.name}={value!r} accepted")
            elif not _names(exc, check):
                problems.append(f"{kind}.{f.name}={value!r} refused, but not by {check}: {exc.orig}")
    assert not problems, "\n".join(problems)

    # What went in is what is stored: one row per domain value of, e.g., the first domain field.
    kind, f = DOMAIN_FIELDS[0]
    stored = rows.conn.execute(select(typed[kind].c[f.name]).where(
        typed[kind].c.tenant_id == rows.tenant_id)).scalars().all()
    assert sorted(set(stored)) == sorted(f.domain)


def test_range_checks_refuse_values_outside_the_declared_bounds(rows):
    problems = []
    for kind, f in RANGE_FIELDS:
        check = f"ck_{kind}_{f.name}_range"
        inside = [b for b in (f.ge, f.le) if b is not None]
        outside = []
        if f.ge is not None:
            outside.append(f.ge - 1)
        if f.le is not None:
            outside += [f.le + 1, f.le + 4465]  # e.g. port.number 65536 and 70000, risk.cvss 11
            if f.type is FieldType.FLOAT:
                outside.append(f.le + 0.01)
        cast = int if f.type is FieldType.INT else float
        for value in map(cast, inside):
            if (exc := rows.typed_row(kind, **{f.name: value})) is not None:
                problems.append(f"{kind}.{f.name}={value!r} refused: {exc.orig}")
        for value in map(cast, outside):
            exc = rows.typed_row(kind, **{f.name: value})
            if exc is None:
                problems.append(f"{kind}.{f.name}={value!r} accepted")
            elif not _names(exc, check):
                problems.append(f"{kind}.{f.name}={value!r} refused, but not by {check}: {exc.orig}")
    assert not problems, "\n".join(problems)


def test_required_and_defaulted_fields_are_not_null_others_may_be(rows):
    problems = []
    for kind in NODE_KINDS:
        for f in REGISTRY.entity(kind).fields:
            exc = rows.typed_row(kind, **{f.name: None})
            if _stored_not_null(f) and exc is None:
                problems.append(f"{kind}.{f.name}=NULL accepted (required or has a default)")
            elif _stored_not_null(f) and not _names(exc, f.name):
                problems.append(f"{kind}.{f.name}=NULL refused for another reason: {exc.orig}")
            elif not _stored_not_null(f) and exc is not None:
                problems.append(f"{kind}.{f.name}=NULL refused (optional): {exc.orig}")
    assert not problems, "\n".join(problems)


def test_typed_row_needs_its_node(rows):
    kind = NODE_KINDS[0]
    values = {f.name: _valid(f) for f in REGISTRY.entity(kind).fields}
    exc = rows.attempt(typed[kind], node_id=987_654_321, **values)
    assert exc is not None and _names(exc, "foreign key")


def test_node_kind_must_be_a_node_kind(rows):
    problems = []
    # The node kinds themselves are accepted (Rows.node would raise otherwise) ...
    for kind in NODE_KINDS:
        rows.node(kind)
    # ... and nothing else: not a non-node entity kind (tenant), not a relationship, no near miss.
    others = [k for k in REGISTRY.entities if k not in REGISTRY.node_kinds]
    others += [NODE_KINDS[0].upper(), NODE_KINDS[0] + "s", "", next(iter(REGISTRY.relationships))]
    for i, kind in enumerate(others):
        exc = rows.attempt(node, id=1 + i, key=f"#bad#{i}", kind=kind, version=1,
                           content_hash=bytes(16), first_seen=NOW, last_seen=NOW, updated_at=NOW)
        if exc is None:
            problems.append(f"node.kind={kind!r} accepted")
        elif not _names(exc, "ck_node_kind_domain"):
            problems.append(f"node.kind={kind!r} refused, but not by ck_node_kind_domain: {exc.orig}")
    assert not problems, "\n".join(problems)
    assert others, "expected at least the near misses"


@pytest.fixture
def graph(rows):
    """Two nodes of every node kind, so any edge between existing nodes can be attempted."""
    return {k: (rows.node(k), rows.node(k)) for k in NODE_KINDS}


def test_every_declared_triple_is_accepted(rows, graph):
    problems = []
    for rel, s, t in TRIPLES:
        exc = rows.edge_row(rel, graph[s][0], s, graph[t][1], t)
        if exc is not None:
            problems.append(f"{rel} {s}->{t} refused: {exc.orig}")
    assert not problems, "\n".join(problems)
    stored = rows.conn.execute(select(edge.c.kind, edge.c.source_kind, edge.c.target_kind)
                               .where(edge.c.tenant_id == rows.tenant_id)).all()
    assert sorted(tuple(r) for r in stored) == TRIPLES


def test_undeclared_triples_are_refused(rows, graph):
    declared = set(TRIPLES)
    # Every relationship with every kind pair it does not declare, e.g. HAS_PORT asset -> risk;
    # plus relationship names that do not exist, on a pair some relationship does allow.
    attempts = [(r, s, t) for r in REGISTRY.relationships for s in NODE_KINDS for t in NODE_KINDS
                if (r, s, t) not in declared]
    _, s0, t0 = TRIPLES[0]
    rel0 = TRIPLES[0][0]
    attempts += [(rel0.lower(), s0, t0), (rel0 + "X", s0, t0), ("", s0, t0)]
    assert ("HAS_PORT", "asset", "risk") in attempts
    problems = []
    for rel, s, t in attempts:
        exc = rows.edge_row(rel, graph[s][0], s, graph[t][1], t)
        if exc is None:
            problems.append(f"{rel} {s}->{t} accepted")
        elif not _names(exc, "ck_edge_allowed_kinds"):
            problems.append(f"{rel} {s}->{t} refused, but not by ck_edge_allowed_kinds: {exc.orig}")
    assert not problems, "\n".join(problems)


def test_edge_kinds_must_match_the_nodes_actual_kinds(rows, graph):
    # A declared triple whose source (or target) id is a node of another kind: only the
    # composite foreign key (tenant_id, id, kind) -> node can catch it.
    problems = []
    for rel, s, t in TRIPLES:
        wrong_s = next(k for k in NODE_KINDS if k != s)
        wrong_t = next(k for k in NODE_KINDS if k != t)
        for end, exc in (
            ("source", rows.edge_row(rel, graph[wrong_s][0], s, graph[t][1], t)),
            ("target", rows.edge_row(rel, graph[s][0], s, graph[wrong_t][1], t)),
        ):
            if exc is None:
                problems.append(f"{rel} {s}->{t} with a mismatched {end} kind accepted")
            elif not _names(exc, "foreign key"):
                problems.append(f"{rel} {s}->{t} mismatched {end}: not an FK error: {exc.orig}")
    assert not problems, "\n".join(problems)


def test_edge_to_or_from_a_missing_node_is_refused(rows, graph):
    rel, s, t = TRIPLES[0]
    missing = 987_654_321
    pg = rows.conn.dialect.name == "postgresql"
    for end, exc in (("target", rows.edge_row(rel, graph[s][0], s, missing, t)),
                     ("source", rows.edge_row(rel, missing, s, graph[t][1], t))):
        assert exc is not None, f"edge with a missing {end} accepted"
        # SQLite does not name the violated foreign key; PostgreSQL does.
        assert _names(exc, "foreign key", f"fk_edge_{end}_node" if pg else ""), exc.orig
