"""Tenant isolation: through every read path on both engines, and in the database itself on
PostgreSQL (row-level security under the non-owner application role)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bastion.errors import NotFound
from bastion.schema.batch import Batch
from bastion.store.store import Store

T0 = datetime(2026, 2, 1, tzinfo=timezone.utc)


def load(tenant, host: str, risk: str) -> tuple[str, str]:
    b = Batch()
    h = b.add("asset", identifier=host)
    r = b.add("risk", target=h, name=risk, severity="high")
    tenant.apply(b, actor="a", source="s", at=T0)
    return h, r


def test_data_of_one_tenant_is_invisible_to_another_on_every_read_path(store):
    store.add_tenant("acme")
    store.add_tenant("globex")
    a, b = store.tenant("acme"), store.tenant("globex")
    host, risk = load(a, "secret.acme.example", "leaked key")
    assert a.get(host) is not None
    assert b.get(host) is None
    assert b.get(risk, as_of=T0 + timedelta(days=1)) is None
    assert b.list("asset").records == [] and b.list("risk").records == []
    assert b.count("asset") == 0 and b.count("risk", where={"severity": "high"}) == 0
    assert b.history(risk) == [] and b.events() == []
    assert b.links(host) == []
    assert all(v == 0 for v in b.counts().values())
    assert a.count("risk") == 1 and len(a.history(risk)) == 1


def test_tenants_may_hold_the_same_keys_independently(store):
    store.add_tenant("acme")
    store.add_tenant("globex")
    a, b = store.tenant("acme"), store.tenant("globex")
    _, risk = load(a, "shared.example", "weak tls")
    load(b, "shared.example", "weak tls")
    b2 = Batch()
    b2.add("risk", target="#asset#shared.example#shared.example", name="weak tls", severity="low")
    b.apply(b2, actor="a", source="s")
    assert a.get(risk).values["severity"] == "high" and a.get(risk).version == 1
    assert b.get(risk).values["severity"] == "low" and b.get(risk).version == 2
    # each tenant's event sequence is its own
    assert [e.seq for e in a.events()] == [1, 2, 3]
    assert [e.seq for e in b.events()] == [1, 2, 3, 4]


def test_unknown_tenant_is_a_clear_error(store):
    with pytest.raises(NotFound, match="no tenant named 'nobody'"):
        store.tenant("nobody")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["t1", "t2", "t3"]),
                          st.sampled_from([f"h{i}.example" for i in range(6)])), max_size=20))
def test_each_tenant_sees_exactly_what_was_written_for_it(store, writes):
    names = {n: f"{n}-{store.tenants().__len__()}" for n in ("t1", "t2", "t3")}
    for n in names.values():
        store.add_tenant(n)
    expected = {n: set() for n in names}
    for n, host in writes:
        b = Batch()
        expected[n].add(b.add("asset", identifier=host))
        store.tenant(names[n]).apply(b, actor="a", source="s")
    for n, keys in expected.items():
        t = store.tenant(names[n])
        assert {r.key for r in t.list("asset", limit=1000).records} == keys
        assert t.count("asset") == len(keys)


# -- PostgreSQL: the database itself refuses cross-tenant access ---------------------------------

# Row-level security is PostgreSQL's; on SQLite the query layer is the guard (tests above).
postgres_only = pytest.mark.parametrize("engine_name", ["postgresql"])


@pytest.fixture
def app_login(store, database_url):
    """A login role that is only a member of bastion_app: neither owner nor superuser."""
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bastion_test_login') THEN
                    CREATE ROLE bastion_test_login LOGIN;
                END IF;
            END $$"""))
        conn.execute(text("GRANT bastion_app TO bastion_test_login"))
    url = make_url(database_url).set(username="bastion_test_login", password=None)
    return url.render_as_string(hide_password=False)


@postgres_only
def test_raw_select_as_the_application_role_returns_only_the_current_tenant(store, app_login):
    store.add_tenant("acme")
    store.add_tenant("globex")
    load(store.tenant("acme"), "a.acme.example", "x")
    load(store.tenant("globex"), "g.globex.example", "y")
    acme_id, globex_id = store.tenant("acme").tenant_id, store.tenant("globex").tenant_id
    engine = create_engine(app_login)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == "bastion_test_login"
            # No tenant set: nothing is visible at all.
            assert conn.execute(text("SELECT count(*) FROM node")).scalar() == 0
            conn.execute(text("SELECT bastion_set_tenant(:t)"), {"t": acme_id})
            rows = conn.execute(text("SELECT DISTINCT tenant_id FROM node")).scalars().all()
            assert rows == [acme_id]
            assert conn.execute(text("SELECT count(*) FROM event")).scalar() == 3
            assert conn.execute(text("SELECT count(*) FROM tenant")).scalar() == 1
            # Updating another tenant's rows silently matches nothing.
            changed = conn.execute(text("UPDATE risk SET severity = 'low' WHERE tenant_id = :g"),
                                   {"g": globex_id}).rowcount
            assert changed == 0
        with pytest.raises(DBAPIError, match="row-level security"):
            with engine.begin() as conn:
                conn.execute(text("SELECT bastion_set_tenant(:t)"), {"t": acme_id})
                conn.execute(text(
                    "INSERT INTO node (tenant_id, id, key, kind, version, content_hash, first_seen,"
                    " last_seen, updated_at) VALUES (:g, 1, '#asset#x#x', 'asset', 1, '\\x00', now(),"
                    " now(), now())"), {"g": globex_id})
        with pytest.raises(DBAPIError, match="permission denied"):
            with engine.begin() as conn:
                conn.execute(text("SELECT bastion_set_tenant(:t)"), {"t": acme_id})
                conn.execute(text("DELETE FROM event"))
    finally:
        engine.dispose()
    assert store.tenant("globex").count("risk", where={"severity": "high"}) == 1


@postgres_only
def test_the_store_works_through_a_login_that_is_only_the_application_role(store, app_login):
    store.add_tenant("acme")
    load(store.tenant("acme"), "a.acme.example", "x")
    limited = Store(app_login)
    try:
        acme = limited.tenant("acme")
        assert acme.count("asset") == 1
        load(acme, "b.acme.example", "y")
        assert acme.count("asset") == 2
        with pytest.raises(NotFound):
            limited.tenant("globex")
    finally:
        limited.close()
