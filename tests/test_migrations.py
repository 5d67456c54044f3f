"""Alembic owns the schema, on both engines.

- After `upgrade head` an autogenerate comparison against the registry-derived metadata finds
  nothing to do: the revisions build exactly the tables, columns, types, indexes, keys and
  foreign keys bastion/store/tables.py declares. (Alembic does not compare CHECK constraints;
  tests/test_constraints.py proves those accept exactly the registry's domains.)
- Every revision downgrades and upgrades again with the data written at it intact, and
  `downgrade base` removes every Bastion table.
- PostgreSQL: row-level security and the application role's privileges are in place; both
  engines refuse UPDATE and DELETE of events even to the owner.

Every test starts from an EMPTY database (`unmigrated`) and runs the migrations itself.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, inspect, text
from sqlalchemy.exc import DBAPIError

from bastion.schema.batch import Batch
from bastion.schema.kinds import REGISTRY
from bastion.store import migrate
from bastion.store.engine import APP_ROLE
from bastion.store.store import Store
from bastion.store.tables import TENANT_TABLES, metadata

pytestmark = pytest.mark.unmigrated

BASTION_TABLES = set(metadata.tables)
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
    migrate.downgrade(empty.engine, "base")
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
    # ... which otherwise can do its work on every tenant table.
    for t in tables:
        if t not in ("event", "tenant"):
            assert all(privileges[(t, p)] for p in ("SELECT", "INSERT", "UPDATE", "DELETE")), t
    assert privileges[("tenant", "SELECT")]
    assert not privileges[("tenant", "DELETE")] and not privileges[("tenant", "INSERT")]


@pytest.mark.parametrize("statement", [
    "UPDATE event SET actor = 'mallory'",
    "UPDATE event SET diff = '{}' WHERE seq = 1",
    "DELETE FROM event",
    "DELETE FROM event WHERE seq = 1",
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
