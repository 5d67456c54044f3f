"""The most common queries the store issues, captured from the library itself, and the index
each uses according to the engine's planner (docs/query-patterns.md).

Each pattern runs a real library call (a `get`, a page of a list, a history …) against a tenant
while a cursor listener records the statements it sends; the pattern's statement is the first
one that matches its `match` text. `explain()` then asks the planner about exactly that SQL with
exactly those parameters, inside a transaction bound to the tenant as the application role
(PostgreSQL: row-level security in the plan), and lists the indexes the plan reads.
tests/ops/test_query_patterns.py fails when a pattern stops using its index on either engine;
bench/query_patterns.py measures each at 1M rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import orjson
from sqlalchemy import event as sa_event

from bastion.store.query import bind_tenant


@dataclass(frozen=True)
class Pattern:
    name: str
    what: str  # what the library call is for
    match: str  # text identifying the pattern's statement among those the call sends
    index: str  # the index it must use (the same name on both engines: tables.NAMING)

    @property
    def indexes(self) -> tuple[str, ...]:
        return (self.index, *self.also)
    run: Callable[[Any, Any, dict], Any]  # (store, tenant, sample keys) → the library call
    also: tuple[str, ...] = ()  # other indexes that serve it as well (a planner's equal choice)


@dataclass(frozen=True)
class Captured:
    statement: str
    parameters: Any


# Sample keys the patterns read (bench/query_patterns.py and the test create them).
ASSET = "#asset#www.acme.example#www.acme.example"
PORT = "#port#tcp#443#asset#www.acme.example#www.acme.example"
RISK = "#risk#www.acme.example#weak-tls"


def _list(kind: str, **kw):
    return lambda s, t, k: t.list(kind, limit=50, **kw)


# A node by id: its primary key or one of the unique keys that lead with the same columns.
NODE_UNIQUE = ("uq_node_tenant_id_key", "uq_node_tenant_id_id_kind")
# Lists page in key order: the key index finds the kind's range (design.md: "Listing by kind uses
# the key index") and each row's typed fields come by primary key; a field's own index serves
# when the planner prefers it.
PATTERNS: tuple[Pattern, ...] = (
    Pattern("get entity", "bastion get KEY: one entity by key", "FROM node JOIN asset",
            "pk_node", lambda s, t, k: t.get(ASSET), also=NODE_UNIQUE),
    Pattern("get many", "an importer's merge: stored entities of a chunk of keys", "FROM node JOIN port",
            "pk_node", lambda s, t, k: t.get_many([PORT]), also=NODE_UNIQUE),
    Pattern("list kind", "bastion list assets: a page in key order", "FROM node JOIN asset",
            "uq_node_tenant_id_key", _list("asset")),
    Pattern("list after cursor", "the next page of a list", "FROM node JOIN asset",
            "uq_node_tenant_id_key", lambda s, t, k: t.list("asset", limit=1, after=k["cursor"])),
    Pattern("risks by status", "open risks (status filter)", "FROM node JOIN risk",
            "uq_node_tenant_id_key", also=("ix_risk_tenant_id_status",),
            run=_list("risk", where=["status=open"], order_by="status")),
    Pattern("risks by priority", "risks by priority, highest first", "FROM node JOIN risk",
            "uq_node_tenant_id_key", also=("ix_risk_tenant_id_priority",),
            run=_list("risk", order_by="priority", descending=True)),
    Pattern("risks by cve", "risks naming a CVE", "FROM node JOIN risk",
            "uq_node_tenant_id_key", also=("ix_risk_tenant_id_cve",),
            run=_list("risk", where=["cve=CVE-2021-44228"])),
    Pattern("risks by severity", "risks of a severity", "FROM node JOIN risk",
            "uq_node_tenant_id_key", also=("ix_risk_tenant_id_severity",),
            run=_list("risk", where=["severity=critical"], order_by="severity")),
    Pattern("assets by class", "assets of a class", "FROM node JOIN asset",
            "uq_node_tenant_id_key", also=("ix_asset_tenant_id_class",),
            run=_list("asset", where=["class=ipv4"], order_by="class")),
    Pattern("ports by state", "ports in a state", "FROM node JOIN port",
            "uq_node_tenant_id_key", also=("ix_port_tenant_id_state",),
            run=_list("port", where=["state=filtered"], order_by="state")),
    Pattern("count kind", "entities of a kind (bastion stats)", "count(*)",
            "uq_node_tenant_id_key", lambda s, t, k: t.count("asset"),
            also=("uq_node_tenant_id_id_kind",)),
    Pattern("links out", "an entity's outgoing relationships", "FROM edge",
            "pk_edge", lambda s, t, k: t.links(ASSET, "out")),
    Pattern("links in", "an entity's incoming relationships", "FROM edge",
            "ix_edge_tenant_id_target_id_kind_source_id", lambda s, t, k: t.links(PORT, "in")),
    # Events are numbered by their commits (bastion.store.eventlog): an entity's are found by
    # its index and joined to their commits; the log after a number is read commit by commit
    # (UNIQUE (tenant_id, last)), their events by primary key ranges; a correlation id's
    # transactions are found first, skipping through its index.
    Pattern("history", "bastion history KEY: an entity's events in order",
            "FROM event JOIN event_commit", "ix_event_tenant_id_entity_key_txn_pos",
            lambda s, t, k: t.history(ASSET)),
    Pattern("events after", "the event log from a sequence number (consumers, the relay)",
            "event.pos AS seq", "pk_event",
            lambda s, t, k: t.events(after_seq=k["seq"], limit=100)),
    Pattern("changes of a run", "bastion changes --correlation-id: what one run changed",
            "WITH RECURSIVE txns", "ix_event_tenant_id_correlation_id_txn_pos",
            lambda s, t, k: _changes(t, k["correlation_id"])),
    Pattern("as of", "bastion get KEY --as-of: the entity folded from its events",
            "FROM event JOIN event_commit", "ix_event_tenant_id_entity_key_txn_pos",
            lambda s, t, k: t.get(ASSET, as_of=datetime.now(timezone.utc))),
    Pattern("settings", "the tenant's settings", "FROM setting", "pk_setting",
            lambda s, t, k: t.settings()),
    Pattern("import runs", "bastion imports list", "FROM import_run", "pk_import_run",
            lambda s, t, k: t.runs.list(20)),
    Pattern("overdue risks", "bastion risk overdue: open risks past their SLA", "FROM node JOIN risk",
            "ix_risk_tenant_id_status",
            lambda s, t, k: t.overdue_risks({"high": datetime.now(timezone.utc) - timedelta(days=1)}),
            also=("ix_risk_tenant_id_severity", "pk_risk")),
    Pattern("neighbors", "bastion graph neighbors: one hop out", "FROM edge", "pk_edge",
            lambda s, t, k: t.graph().neighbors(ASSET, "out")),
    Pattern("reach", "bastion graph reach: the recursive CTE's hops", "WITH RECURSIVE", "pk_edge",
            lambda s, t, k: t.graph().reach(ASSET, depth=2)),
    Pattern("coverage history", "bastion coverage history: an account's snapshots",
            "FROM coverage_snapshot", "ix_coverage_snapshot_tenant_id_account_id",
            lambda s, t, k: t.coverage.snapshots(account="*"), also=("pk_coverage_snapshot",)),
    Pattern("detection snapshots", "drift: an account's detection inventories",
            "FROM detection_snapshot", "ix_detection_snapshot_tenant_id_account_id",
            lambda s, t, k: t.coverage.detection_snapshots(account="#cloud_account#aws#123456789012"),
            also=("pk_detection_snapshot",)),
    Pattern("tenant by name", "every command: the tenant named by --tenant", "FROM tenant",
            "uq_tenant_name", lambda s, t, k: s.tenant(t.name)),
)


def _changes(tenant, correlation_id: str):
    from bastion.store import changes

    return changes.changes(tenant, correlation_id=correlation_id)


def capture(store, fn: Callable[[], Any]) -> list[Captured]:
    """The statements (with parameters) the store sends while `fn` runs."""
    seen: list[Captured] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not executemany:
            seen.append(Captured(statement, parameters))

    sa_event.listen(store.engine, "before_cursor_execute", record)
    try:
        fn()
    finally:
        sa_event.remove(store.engine, "before_cursor_execute", record)
    return seen


def statement_of(store, tenant, pattern: Pattern, keys: dict) -> Captured:
    found = [c for c in capture(store, lambda: pattern.run(store, tenant, keys))
             if pattern.match.lower() in re.sub(r"\s+", " ", c.statement).lower()
             and not c.statement.lstrip().upper().startswith(("SET", "EXPLAIN"))]
    if not found:
        raise AssertionError(f"pattern {pattern.name!r}: no statement matching {pattern.match!r}")
    return found[0]


def explain(store, tenant_id: int, captured: Captured, *, no_seqscan: bool = False) -> tuple[set[str], str]:
    """(indexes the plan reads, the plan as text), under the statistics the database has (the
    caller runs ANALYZE: a plan on tables never analyzed says little). `no_seqscan`: PostgreSQL
    plans with sequential scans disabled, so a test's small tables show which index the statement
    can use (a sequential scan then means none can)."""
    pg = store.engine.dialect.name == "postgresql"
    with store.engine.connect() as conn, conn.begin():
        if pg:
            bind_tenant(conn, tenant_id)
            if no_seqscan:
                conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            rows = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + captured.statement,
                                        captured.parameters).all()
            plan = rows[0][0]
            plan = plan if isinstance(plan, list) else orjson.loads(plan)
            return _pg_indexes(plan), _pg_text(plan[0]["Plan"])
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + captured.statement,
                                    captured.parameters).all()
        details = [r[-1] for r in rows]
        names = _sqlite_autoindex_names(conn)
        # SQLite's plan names a table by its alias (`node AS other` → other)
        aliases = {f"pk_{a}": f"pk_{t}" for t, a in re.findall(r"\b(\w+) AS (\w+)", captured.statement)}
        used = {names.get(i, aliases.get(i, i)) for i in _sqlite_indexes(details)}
        return used, "\n".join(details)


def _sqlite_autoindex_names(conn) -> dict[str, str]:
    """SQLite names a UNIQUE constraint's index sqlite_autoindex_<table>_<n>: the declared
    constraint's name with the same columns (tables.NAMING), as PostgreSQL calls it."""
    from sqlalchemy import UniqueConstraint

    from bastion.store.tables import metadata

    out = {}
    for table in metadata.tables.values():
        declared = {tuple(c.name for c in k.columns): k.name for k in table.constraints
                    if isinstance(k, UniqueConstraint)}
        for row in conn.exec_driver_sql(f'PRAGMA index_list("{table.name}")').all():
            if row[1].startswith("sqlite_autoindex_"):
                cols = tuple(r[2] for r in conn.exec_driver_sql(f'PRAGMA index_info("{row[1]}")').all())
                if cols in declared:
                    out[row[1]] = declared[cols]
    return out


def _pg_indexes(plan) -> set[str]:
    out: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if "Index Name" in node:
                out.add(node["Index Name"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(plan)
    return out


def _pg_text(node, depth: int = 0) -> str:
    line = "  " * depth + node["Node Type"] + (f" using {node['Index Name']}" if "Index Name" in node else "") \
        + (f" on {node['Relation Name']}" if "Relation Name" in node else "")
    return "\n".join([line, *(_pg_text(c, depth + 1) for c in node.get("Plans", []))])


def _sqlite_indexes(details: list[str]) -> set[str]:
    out = set()
    for d in details:
        m = re.search(r"(?:SEARCH|SCAN) (\w+)(?: AS \w+)? USING (?:COVERING )?INDEX (\w+)", d)
        if m:
            out.add(m.group(2))
        m = re.search(r"(?:SEARCH|SCAN) (\w+)(?: AS \w+)? USING PRIMARY KEY", d)
        if m:
            out.add(f"pk_{m.group(1)}")
        m = re.search(r"SEARCH (\w+)(?: AS \w+)? USING INTEGER PRIMARY KEY", d)
        if m:
            out.add(f"pk_{m.group(1)}")
    return out


def analyze(store) -> None:
    """Refresh the planner's statistics (ANALYZE), as autovacuum or `PRAGMA optimize` would."""
    with store.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
