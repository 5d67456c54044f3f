"""Alembic owns the schema, on both engines.

- After `upgrade head` an autogenerate comparison against the registry-derived metadata finds
  nothing to do: the revisions build exactly the tables, columns, types, indexes, keys and
  foreign keys bastion/store/tables.py declares. (Alembic does not compare CHECK constraints;
  tests/test_constraints.py proves those accept exactly the registry's domains.)
- Every revision downgrades and upgrades again with the data written at it intact, and
  `downgrade base` removes every Bastion table (forced: without --force it is refused).
- A downgrade that would destroy data is refused, listing what per table/column, unless forced;
  what a forced one removes from the graph is removed through events, and content hashes follow
  the data, so importing the same scan again restores what a downgrade dropped (issue 11 point 9;
  tests/reliability/test_migration_roundtrip.py compares every table's content for every
  revision).
- PostgreSQL: row-level security and the application role's privileges are in place; both
  engines refuse UPDATE and DELETE of events even to the owner.

Every test starts from an EMPTY database (`unmigrated`) and runs the migrations itself.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, inspect, text
from sqlalchemy.exc import DBAPIError

from cli_harness import Cli, runner  # noqa: F401  (the CLI test's fixture)

from bastion.errors import LossyDowngrade, NotFound
from bastion.ingest.runner import Options, import_paths
from bastion.risks import enrich
from bastion.schema.batch import Batch
from bastion.schema.kinds import REGISTRY
from bastion.store import migrate
from bastion.store.engine import APP_ROLE
from bastion.store.store import Store
from bastion.store.tables import TENANT_TABLES, metadata

pytestmark = pytest.mark.unmigrated

BASTION_TABLES = set(metadata.tables)
FIXTURES = Path(__file__).parent / "fixtures"
RISK_FIELDS_0004 = ("source", "evidence", "kev", "kev_due", "kev_ransomware", "epss",
                    "epss_percentile", "priority")
AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


@pytest.fixture
def empty(database_url):
    s = Store(database_url)
    yield s
    s.close()


def _diff(store: Store) -> list:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, metadata)


def _write(store: Store, tenant_name: str) -> list[str]:
    """Real data through the library: assets, ports, a risk, a technology and edges (explicit
    and implied), then an update, so created, updated, status-changed and edge events exist.
    Returns the entity keys."""
    store.add_tenant(tenant_name, display_name=f"Tenant {tenant_name}")
    ts = store.tenant(tenant_name)
    b = Batch()
    web = b.add("asset", identifier="www.example.com", criticality="high", exposure="external")
    ip = b.add("asset", identifier="192.0.2.10")
    https = b.add("port", asset=ip, number=443, service="https")
    ssh = b.add("port", asset=ip, number=22, protocol="TCP", state="filtered")
    tech = b.add("technology", name="nginx", version="1.25.3", vendor="f5")
    risk = b.add("risk", target=https, name="weak tls ciphers", severity="medium", cvss=5.3,
                 properties={"evidence": ["TLS_RSA_WITH_RC4_128_SHA"]})
    cve = b.add("risk", target=tech, cve="cve-2023-44487", severity="high")
    b.link("RESOLVES_TO", web, ip)
    b.link("HAS_TECHNOLOGY", https, tech, detected_by="httpx")
    b.link("CONNECTS_TO", ssh, https)
    ts.apply(b, actor="test", source="migration-test", correlation_id="c-1", at=AT)
    update = Batch()
    update.add("risk", target=https, name="weak tls ciphers", severity="high", status="open")
    update.add("asset", identifier="www.example.com", criticality="critical", exposure="external")
    ts.apply(update, actor="test", source="migration-test", correlation_id="c-2", at=AT)
    return [web, ip, https, ssh, tech, risk, cve]


def _snapshot(store: Store, tenant_name: str, keys: list[str]) -> dict:
    """Everything the library reads back about a tenant: entities, listings, links, events."""
    ts = store.tenant(tenant_name)
    return {
        "tenant": [(t.name, t.display_name, t.created_at) for t in store.tenants()
                   if t.name == tenant_name],
        "get": {k: ts.get(k) for k in keys},
        "list": {kind: ts.list(kind).records for kind in REGISTRY.node_kinds},
        "counts": ts.counts(),
        "links": {k: ts.links(k) for k in keys},
        "history": {k: ts.history(k) for k in keys},
        "events": ts.events(),
    }


def _bastion_tables(store: Store) -> set[str]:
    return set(inspect(store.engine).get_table_names()) & BASTION_TABLES


def test_current_is_none_on_an_empty_database_and_head_after_upgrade(empty):
    assert migrate.current(empty.engine) is None
    assert _bastion_tables(empty) == set()
    migrate.upgrade(empty.engine, "head")
    assert migrate.current(empty.engine) == migrate.head()
    assert migrate.head() == migrate.revisions()[-1]
    assert _bastion_tables(empty) == BASTION_TABLES


def test_autogenerate_finds_no_difference_after_upgrade(empty):
    migrate.upgrade(empty.engine, "head")
    diff = _diff(empty)
    assert diff == [], (
        "the migrations and bastion/store/tables.py disagree; write a revision with "
        f"`alembic revision --autogenerate` and review it:\n{diff}"
    )


def test_migrated_check_constraints_are_the_declared_ones(empty):
    # Autogenerate ignores CHECK constraints, so a constraint added to tables.py but forgotten
    # in a revision would pass the test above. Names are compared here; what each one accepts
    # is proved against the registry in tests/test_constraints.py.
    migrate.upgrade(empty.engine, "head")
    insp = inspect(empty.engine)
    for table in metadata.sorted_tables:
        declared = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        migrated = {c["name"] for c in insp.get_check_constraints(table.name)}
        assert migrated == declared, table.name


def test_every_revision_downgrades_and_upgrades_again_with_data_intact(empty):
    revisions = migrate.revisions()
    assert len(revisions) >= 2, "nothing to round-trip"
    snapshots: dict[str, tuple[list[str], dict]] = {}
    # Data is written through today's library, which needs the schema at head; each round trip
    # then goes down to just before `rev` (undoing every revision from head to `rev`) and back.
    for previous, rev in reversed(list(zip(revisions, revisions[1:]))):
        migrate.upgrade(empty.engine, "head")
        name = f"rev-{rev}"
        keys = _write(empty, name)
        before = _snapshot(empty, name, keys)
        # The data really is there, so the comparison below is not between two empty reads.
        assert all(before["get"].values()) and before["events"] and any(before["links"].values())
        assert {e.event_type for e in before["events"]} >= {
            "asset.created", "port.created", "risk.created", "asset.updated",
            "risk.status_changed", "edge.added"}

        if migrate.losses(empty.engine, previous):
            # The data uses what a revision from head down to `rev` added: the downgrade is
            # refused and changes nothing (the forced round trip, table by table, is in
            # tests/reliability/test_migration_roundtrip.py).
            with pytest.raises(LossyDowngrade):
                migrate.downgrade(empty.engine, previous)
        else:
            migrate.downgrade(empty.engine, previous)
            assert migrate.current(empty.engine) == previous
            migrate.upgrade(empty.engine, "head")
        assert migrate.current(empty.engine) == migrate.head()

        assert _snapshot(empty, name, keys) == before
        snapshots[rev] = (keys, before)

    # At head, the data of every earlier revision's round trip is still what it was then, and
    # the schema is still exactly the declared one.
    for rev, (keys, before) in snapshots.items():
        assert _snapshot(empty, f"rev-{rev}", keys) == before
    assert _diff(empty) == []


def test_downgrade_to_base_removes_every_table_and_upgrade_rebuilds(empty):
    migrate.upgrade(empty.engine, "head")
    _write(empty, "gone")
    # Without --force it is refused, listing the rows every table would lose; nothing changes.
    with pytest.raises(LossyDowngrade) as refused:
        migrate.downgrade(empty.engine, "base")
    lost = {loss.what: loss.count for loss in refused.value.losses if loss.revision == "0001"}
    assert lost["tenant"] == 1 and lost["asset"] == 2 and lost["port"] == 2 and lost["risk"] == 2
    assert lost["event"] == len(empty.tenant("gone").events())
    assert "downgrade to base would destroy data in " in str(refused.value)
    named = str(refused.value).split("destroy data in ")[1].split(";")[0].split(", ")
    assert {"tenant", "node", "edge", "event", "event_commit"} <= set(named)
    assert migrate.current(empty.engine) == migrate.head()
    assert _bastion_tables(empty) == BASTION_TABLES
    assert migrate.downgrade(empty.engine, "base", force=True) == refused.value.losses
    assert migrate.current(empty.engine) is None
    assert _bastion_tables(empty) == set()
    # Only Alembic's own bookkeeping table may remain.
    assert set(inspect(empty.engine).get_table_names()) <= {"alembic_version"}

    migrate.upgrade(empty.engine, "head")
    assert migrate.current(empty.engine) == migrate.head()
    assert _diff(empty) == []
    assert empty.tenants() == []
    keys = _write(empty, "again")
    ts = empty.tenant("again")
    assert ts.get(keys[0]).values["identifier"] == "www.example.com"
    assert ts.events()[0].seq == 1


# Row-level security and roles are PostgreSQL features: this one test runs there only.
@pytest.mark.parametrize("engine_name", ["postgresql"])
def test_postgres_row_level_security_and_app_role_privileges(empty):
    migrate.upgrade(empty.engine, "head")
    tables = [t.name for t in TENANT_TABLES] + ["tenant"]
    with empty.engine.connect() as conn:
        rls = dict(conn.execute(text(
            "SELECT relname, relrowsecurity FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relname = ANY(:t)"), {"t": tables}).all())
        policies = dict(conn.execute(text(
            "SELECT tablename, array_agg(roles::text) FROM pg_policies "
            "WHERE schemaname = 'public' GROUP BY tablename")).all())

        def can(table: str, privilege: str) -> bool:
            return conn.execute(text("SELECT has_table_privilege(:r, :t, :p)"),
                                {"r": APP_ROLE, "t": table, "p": privilege}).scalar_one()

        privileges = {(t, p): can(t, p) for t in tables
                      for p in ("SELECT", "INSERT", "UPDATE", "DELETE")}

    assert rls == {t: True for t in tables}
    missing = [t for t in tables if t not in policies]
    assert not missing, f"tables without a row-level security policy: {missing}"
    assert all(APP_ROLE in str(policies[t]) for t in tables), policies
    # The event log is append-only for the application role ...
    assert privileges[("event", "SELECT")] and privileges[("event", "INSERT")]
    assert not privileges[("event", "UPDATE")] and not privileges[("event", "DELETE")]
    # ... whose numbers only the trusted function that commits them writes (bastion_commit_events)
    assert privileges[("event_commit", "SELECT")]
    assert not any(privileges[("event_commit", p)] for p in ("INSERT", "UPDATE", "DELETE"))
    # ... and which otherwise can do its work on every tenant table.
    for t in tables:
        if t not in ("event", "event_commit", "tenant"):
            assert all(privileges[(t, p)] for p in ("SELECT", "INSERT", "UPDATE", "DELETE")), t
    assert privileges[("tenant", "SELECT")]
    assert not privileges[("tenant", "DELETE")] and not privileges[("tenant", "INSERT")]


@pytest.mark.parametrize("statement", [
    "UPDATE event SET actor = 'mallory'",
    "UPDATE event SET diff = '{}' WHERE pos = 1",
    "DELETE FROM event",
    "DELETE FROM event WHERE pos = 1",
])
def test_event_log_refuses_update_and_delete_even_to_the_owner(empty, statement):
    migrate.upgrade(empty.engine, "head")
    _write(empty, "audit")
    ts = empty.tenant("audit")
    before = ts.events()
    assert before
    # store.engine logs in as the owner of the tables (no role switch, no RLS): only the
    # trigger stands in the way.
    with pytest.raises(DBAPIError, match="append-only"):
        with empty.engine.begin() as conn:
            conn.execute(text(statement))
    assert ts.events() == before


def test_append_only_trigger_survives_a_downgrade_upgrade_round_trip(empty):
    # Down to every earlier revision: a revision that rebuilds the event table must keep them.
    for revision in migrate.revisions()[:-1]:
        migrate.upgrade(empty.engine, "head")
        migrate.downgrade(empty.engine, revision)
    migrate.upgrade(empty.engine, "head")
    _write(empty, "audit")
    with pytest.raises(DBAPIError, match="append-only"):
        with empty.engine.begin() as conn:
            conn.execute(text("DELETE FROM event"))
    assert empty.tenant("audit").events()


def test_downgrade_of_an_empty_database_needs_no_force(empty):
    migrate.upgrade(empty.engine, "head")
    assert migrate.losses(empty.engine, "base") == []
    assert migrate.downgrade(empty.engine, "base") == []
    assert migrate.current(empty.engine) is None
    migrate.upgrade(empty.engine, "head")
    with pytest.raises(NotFound, match="no-such"):
        migrate.downgrade(empty.engine, "no-such")
    with pytest.raises(NotFound, match="back"):
        migrate.downgrade(empty.engine, f"-{len(migrate.revisions()) + 1}")


def _scan(ts, tmp_path) -> None:
    """A nuclei scan and its enrichment: risks with source, evidence, KEV, EPSS and priority."""
    result = import_paths(ts, [str(FIXTURES / "scans" / "nuclei" / "v3.jsonl")],
                          Options(actor="scanner", reuse=False))
    assert result.status == "succeeded"
    cves = sorted({r.values["cve"] for r in ts.list("risk").records if r.values["cve"]})
    kev = json.loads((FIXTURES / "enrich" / "kev.json").read_text())
    kev["vulnerabilities"][0]["cveID"] = cves[0]
    (tmp_path / "kev.json").write_text(json.dumps(kev))
    (tmp_path / "epss.csv").write_text("cve,epss,percentile\n" + "".join(
        f"{cve},0.{i + 5},0.{i + 7}\n" for i, cve in enumerate(cves)))
    with open(tmp_path / "kev.json", "rb") as fh:
        enrich.apply_kev(ts, enrich.read_kev(fh, "kev.json"), "scanner")
    with open(tmp_path / "epss.csv", "rb") as fh:
        enrich.apply_epss(ts, enrich.read_epss(fh, "epss.csv"), "scanner")


def test_downgrade_below_0004_refuses_then_reimport_restores_what_it_dropped(empty, tmp_path):
    # Issue 11 point 9: `db downgrade 0003 && db upgrade` wiped risk evidence, source, priority,
    # KEV/EPSS fields and event notes, and kept the old content hashes, so importing the same scan
    # again changed nothing and the values never came back.
    migrate.upgrade(empty.engine, "head")
    empty.add_tenant("acme")
    ts = empty.tenant("acme")
    _scan(ts, tmp_path)
    risks = {r.key: r for r in ts.list("risk").records}
    assert all(r.values["source"] and r.values["priority"] is not None for r in risks.values())
    assert any(r.values["kev"] for r in risks.values()) and any(r.values["epss"] for r in risks.values())
    stored = {f: sum(r.values[f] is not None for r in risks.values()) for f in RISK_FIELDS_0004}

    with pytest.raises(LossyDowngrade) as refused:
        migrate.downgrade(empty.engine, "0003")
    lost = {loss.what: loss.count for loss in refused.value.losses if loss.revision == "0004"}
    assert {f: lost.get(f"risk.{f}", 0) for f in RISK_FIELDS_0004} == stored
    assert lost["import_run"] == 1
    assert {r.key: r.values for r in ts.list("risk").records} == {k: r.values for k, r in risks.items()}

    seq = ts.events()[-1].seq
    migrate.downgrade(empty.engine, "0003", force=True, actor="dba")
    migrate.upgrade(empty.engine, "head")
    # The values are gone, and history says so: one risk.updated event per risk, by the actor.
    after = {r.key: r for r in ts.list("risk").records}
    assert all(after[k].values[f] is None for k in risks for f in RISK_FIELDS_0004)
    dropped = [e for e in ts.events() if e.seq > seq]
    assert sorted(e.entity_key for e in dropped) == sorted(risks)
    assert all(e.event_type == "risk.updated" and e.actor == "dba" for e in dropped)
    for e in dropped:
        assert e.entity_version == risks[e.entity_key].version + 1 == after[e.entity_key].version
        assert e.diff["source"] == [risks[e.entity_key].values["source"], None]
        assert ts.get(e.entity_key, as_of=e.occurred_at).values["source"] is None

    # Importing the same scan (and enrichment) again restores every value.
    _scan(ts, tmp_path)
    again = {r.key: r.values for r in ts.list("risk").records}
    assert again == {k: r.values for k, r in risks.items()}


def test_forced_downgrade_below_0005_deletes_detections_through_events(empty):
    # 0005 -> 0004 deleted detection nodes without `deleted` events: history still showed them.
    from bastion.coverage import detections as det_ops
    from bastion.coverage.inventory import Options as DetOptions, import_detections

    migrate.upgrade(empty.engine, "head")
    empty.add_tenant("soc")
    ts = empty.tenant("soc")
    det_ops.add_account(ts, actor="tester", provider="aws", identifier="123456789012", name="prod")
    account = "#cloud_account#aws#123456789012"
    result = import_detections(ts, [str(FIXTURES / "detections" / "simple.csv")],
                               DetOptions(actor="tester", account=account), catalog=None)
    assert not result.rejected
    keys = {kind: [r.key for r in ts.list(kind).records]
            for kind in ("cloud_account", "detection", "mapping")}
    assert all(keys.values())
    links = sum(len(ts.links(k)) for k in keys["cloud_account"] + keys["detection"])
    _write(empty, "other")  # a tenant without detections keeps its counter

    lost = {loss.what: loss.count for loss in migrate.losses(empty.engine, "0004")
            if loss.revision == "0005"}
    assert {k: lost[k] for k in keys} == {k: len(v) for k, v in keys.items()}
    with pytest.raises(LossyDowngrade):
        migrate.downgrade(empty.engine, "0004")
    other_events = empty.tenant("other").events()
    seq = ts.events()[-1].seq
    migrate.downgrade(empty.engine, "0004", force=True)
    migrate.upgrade(empty.engine, "head")

    new = [e for e in ts.events() if e.seq > seq]
    assert [e.seq for e in new] == list(range(seq + 1, seq + 1 + len(new)))  # gap-free
    deleted = {e.entity_key: e for e in new if e.event_type.endswith(".deleted")}
    assert set(deleted) == {k for v in keys.values() for k in v}
    assert sum(e.event_type == "edge.removed" for e in new) == lost["edge"] > 0
    assert links >= lost["edge"]
    for kind, ks in keys.items():
        for k in ks:
            assert ts.get(k) is None
            hist = ts.history(k)
            assert hist[-1].event_type == f"{kind}.deleted"
            assert hist[-1].diff  # the values it had, as the write path records a delete
            assert all(new is None for _old, new in hist[-1].diff.values())
    assert empty.tenant("other").events() == other_events
    assert ts.counts().get("detection", 0) == 0


def test_cli_db_downgrade_lists_losses_and_needs_force(runner, database_url):  # noqa: F811
    cli = Cli(runner, database_url)
    cli("init")
    cli("import", str(FIXTURES / "scans" / "nuclei" / "v3.jsonl"))
    refused = cli("db", "downgrade", "0003", code=LossyDowngrade.exit_code)
    assert "undoing revision 0004, would be lost:" in refused.stdout
    assert "risk.evidence:" in refused.stdout and "import_run: 1 row" in refused.stdout
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "--force" in refused.stderr and "Traceback" not in refused.output
    assert cli("db", "current").stdout.strip() == f"revision: {migrate.head()} (head)"
    forced = cli("db", "downgrade", "0003", "--force").stdout
    assert "undoing revision 0004, removed:" in forced and "revision: 0003 (not head" in forced
    assert "--force" in cli("db", "downgrade", "--help").stdout
