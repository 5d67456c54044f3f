"""Raw SQL as the application role: least privilege on PostgreSQL (docs/security.md).

The deployment the tests build is the one docs/security.md describes: a NON-superuser login owns
the tables and runs `bastion init` and migrations; the application logs in as another login that
is only a member of `bastion_app`. Every attack an application process (or an injection inside
one of its statements) could try must fail with a permission or policy error, while the normal
CLI path works as the application login. SQLite has no roles: there the test asserts what SQLite
can enforce, the trigger-protected event log.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from bastion.schema.batch import Batch
from bastion.store import migrate
from bastion.store.store import Store
from cli_harness import Cli, cli, one_error_line, runner  # noqa: F401 (fixtures)
from reliability.test_migration_roundtrip import content, populate

OWNER, APP = "bastion_rel_owner", "bastion_rel_app"
FIXTURES = Path(__file__).parent.parent / "fixtures"
_names = itertools.count()
A = "#asset#a.acme.example#a.acme.example"


def _ensure_roles(admin) -> None:
    with admin.connect() as conn:
        conn.execute(text(f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bastion_app') THEN
                    CREATE ROLE bastion_app NOLOGIN;
                END IF;
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER}') THEN
                    CREATE ROLE {OWNER} LOGIN NOSUPERUSER NOCREATEROLE NOBYPASSRLS;
                END IF;
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP}') THEN
                    CREATE ROLE {APP} LOGIN NOSUPERUSER NOBYPASSRLS;
                END IF;
            END $$"""))
        # The owner may hand the application role on (as a DBA would set it up); the
        # application login is a member of bastion_app and of nothing else.
        conn.execute(text(f"GRANT bastion_app TO {OWNER} WITH ADMIN OPTION"))
        conn.execute(text(f"GRANT bastion_app TO {APP}"))


def _database(postgres) -> tuple[str, str, str]:
    """A new empty database owned by the non-superuser owner: (name, owner URL, app URL)."""
    name = f"{postgres.prefix}_owned_{next(_names)}"
    with postgres.admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}" OWNER {OWNER}'))
    url = make_url(postgres.url(name))
    return (name, url.set(username=OWNER, password=None).render_as_string(hide_password=False),
            url.set(username=APP, password=None).render_as_string(hide_password=False))


@pytest.fixture
def owned(postgres):
    """(owner URL, app URL) of a database the non-superuser owner initialized."""
    _ensure_roles(postgres.admin)
    made = []

    def make() -> tuple[str, str]:
        name, owner, app = _database(postgres)
        made.append(name)
        return owner, app
    yield make
    for name in made:
        postgres._drop(name)


def load(store: Store, tenant: str, host: str) -> str:
    b = Batch()
    h = b.add("asset", identifier=host)
    r = b.add("risk", target=h, name="leaked key", severity="high")
    store.tenant(tenant).apply(b, actor="owner", source="test")
    return r


def denied(conn_factory, *statements, match: str) -> None:
    """Each statement sequence runs in its own transaction and must fail with `match`."""
    with pytest.raises(DBAPIError, match=match):
        with conn_factory() as conn:
            for sql, params in statements:
                conn.execute(text(sql), params)


def bound(t):
    return ("SELECT bastion_set_tenant(:t)", {"t": t})


def test_the_cli_runs_as_an_application_login_and_only_init_needs_the_owner(owned, runner):
    owner_url, app_url = owned()
    own, app = Cli(runner, owner_url), Cli(runner, app_url)
    own("init")
    own("tenant", "add", "globex")
    for args in (("init",), ("db", "upgrade"), ("db", "grants")):
        line = one_error_line(app(*args, code=1))
        assert "must run as the owner of the tables (bastion_rel_owner)" in line
    # The application login reads the revision and does the daily work.
    assert f"revision: {migrate.head()} (head)" in app("db", "current").stdout
    app("add", "asset", "--identifier", "www.acme.example")
    app("import", str(FIXTURES / "scans" / "nuclei" / "v3.jsonl"))
    assert "#asset#www.acme.example#www.acme.example" in {
        i["key"] for i in app.json("list", "assets")["items"]}
    assert [e["event_type"] for e in app.json("history", "#asset#www.acme.example#www.acme.example")] \
        == ["asset.created"]
    assert app.json("imports", "list")[0]["status"] == "succeeded"
    # Tenant administration needs the owner: one clear line, no traceback.
    assert "permission denied for table tenant" in one_error_line(app("tenant", "add", "x", code=1))
    assert app("list", "assets", tenant="globex").stdout.count("www.acme.example") == 0


def test_every_attack_as_the_application_role_fails(owned, runner):
    owner_url, app_url = owned()
    Cli(runner, owner_url)("init")
    owner = Store(owner_url)
    owner.add_tenant("acme")
    owner.add_tenant("globex")
    acme_risk = load(owner, "acme", "a.acme.example")
    globex_risk = load(owner, "globex", "g.globex.example")
    acme, globex = owner.tenant("acme").tenant_id, owner.tenant("globex").tenant_id
    engine = create_engine(app_url, poolclass=NullPool)  # a new session per transaction
    conn = engine.begin
    try:
        with conn() as c:
            assert c.execute(text("SELECT current_user")).scalar() == APP
            # Unbound, even with the old setting forged: nothing at all, not even tenant names.
            c.execute(text("SELECT set_config('bastion.tenant_id', :t, true)"), {"t": str(globex)})
            assert c.execute(text("SELECT count(*) FROM node")).scalar() == 0
            assert c.execute(text("SELECT count(*) FROM tenant")).scalar() == 0
        with conn() as c:
            c.execute(text(bound(acme)[0]), bound(acme)[1])
            # Switching by setting: ignored; the transaction stays bound to acme.
            c.execute(text("SELECT set_config('bastion.tenant_id', :t, true)"), {"t": str(globex)})
            assert c.execute(text("SELECT DISTINCT tenant_id FROM node")).scalars().all() == [acme]
            assert c.execute(text("SELECT name FROM tenant")).scalars().all() == ["acme"]
            assert c.execute(text("UPDATE risk SET severity = 'low' WHERE tenant_id = :g"),
                             {"g": globex}).rowcount == 0
            c.execute(text("RESET ROLE"))  # the login itself is the application role
            assert c.execute(text("SELECT count(DISTINCT tenant_id) FROM node")).scalar() == 1
        # A second binding in the same transaction, directly, by name, or after DISCARD TEMP.
        denied(conn, bound(acme), bound(globex), match="already set")
        denied(conn, bound(acme), ("SELECT bastion_set_tenant_named('globex')", {}), match="already set")
        denied(conn, bound(acme), ("DISCARD TEMP", {}), bound(globex), match="already set")
        # A forged binding table of the application's own is not believed.
        with conn() as c:
            c.execute(text("CREATE TEMP TABLE bastion_bound (tenant integer, txn bigint, "
                           "events bigint)"))
            c.execute(text("INSERT INTO bastion_bound VALUES (:g, 1, 1000)"), {"g": globex})
            c.execute(text("GRANT ALL ON bastion_bound TO PUBLIC"))
            assert c.execute(text("SELECT count(*) FROM node")).scalar() == 0
        denied(conn, ("CREATE TEMP TABLE bastion_bound (tenant integer)", {}), bound(acme),
               match="not created by Bastion")
        # The event counter and the commits: no direct write, numbers only for the bound tenant.
        denied(conn, bound(acme), ("UPDATE tenant SET event_seq = 0 WHERE id = :g", {"g": globex}),
               match="permission denied for table tenant")
        denied(conn, bound(acme), ("INSERT INTO event_commit VALUES (:t, 99, 0, 1)", {"t": acme}),
               match="permission denied for table event_commit")
        denied(conn, bound(acme), ("DELETE FROM event_commit", {}), match="permission denied")
        for fn in ("bastion_begin_events()", "bastion_commit_events()", "bastion_hold_writes()"):
            denied(conn, (f"SELECT {fn}", {}), match="no tenant is set")
        # Forged events: another tenant's, another transaction's, out of place, or rewriting
        # the log.
        event = ("INSERT INTO event (tenant_id, txn, pos, occurred_at, entity_key, entity_kind, "
                 "event_type, diff, actor, source, correlation_id) VALUES (:t, :x, :p, now(), :k, "
                 "'risk', 'risk.updated', '{}', 'mallory', 'forged', 'x')")
        begin = ("SELECT bastion_begin_events()", {})
        unused = 10**12  # a transaction id no event has
        denied(conn, bound(acme), (event, {"t": globex, "x": unused, "p": 1, "k": globex_risk}),
               match="row-level security")
        denied(conn, bound(acme), (event, {"t": acme, "x": unused, "p": 1, "k": acme_risk}),
               match="another tenant or transaction")
        denied(conn, bound(acme), begin, (event, {"t": acme, "x": 0, "p": unused, "k": acme_risk}),
               match="another tenant or transaction")  # into the numbered past (transaction 0)
        with conn() as c:
            c.execute(text(bound(acme)[0]), bound(acme)[1])
            txn = c.execute(text(begin[0])).scalar()
            c.rollback()
        denied(conn, bound(acme), begin, (event, {"t": acme, "x": txn + 1, "p": 5, "k": acme_risk}),
               match="another tenant or transaction")
        with conn() as c:  # a gap in the positions
            c.execute(text(bound(acme)[0]), bound(acme)[1])
            txn = c.execute(text(begin[0])).scalar()
            with pytest.raises(DBAPIError, match="not at the next positions"):
                c.execute(text(event), {"t": acme, "x": txn, "p": 2, "k": acme_risk})
        denied(conn, bound(acme), ("UPDATE event SET actor = 'mallory'", {}), match="permission denied")
        denied(conn, bound(acme), ("DELETE FROM event", {}), match="permission denied")
        # No way to the owner's privileges, nor to the internal trigger function.
        denied(conn, (f"SET ROLE {OWNER}", {}), match="permission denied to set role")
        denied(conn, ("ALTER TABLE node NO FORCE ROW LEVEL SECURITY", {}), match="must be owner")
        denied(conn, ("DROP POLICY tenant_isolation ON node", {}), match="must be owner")
        # The legitimate path: the transaction's id, its events in place, numbered at the end.
        with conn() as c:
            c.execute(text(bound(acme)[0]), bound(acme)[1])
            txn = c.execute(text(begin[0])).scalar()
            c.execute(text(event), [{"t": acme, "x": txn, "p": 1, "k": acme_risk},
                                    {"t": acme, "x": txn, "p": 2, "k": acme_risk}])
            top = c.execute(text("SELECT bastion_commit_events()")).scalar()
            assert c.execute(text("SELECT base, last FROM event_commit WHERE txn = :x"),
                             {"x": txn}).one() == (top - 2, top)
            c.rollback()
    finally:
        engine.dispose()
    # The owner login in a bound transaction is confined too, RESET ROLE or not.
    with owner.engine.begin() as c:
        c.execute(text(bound(acme)[0]), bound(acme)[1])
        c.execute(text("RESET ROLE"))
        assert c.execute(text("SELECT count(DISTINCT tenant_id) FROM node")).scalar() == 1
        assert c.execute(text("SELECT count(*) FROM tenant")).scalar() == 1
    # Nothing changed, and both tenants still write (their counters are intact).
    for name, risk in (("acme", acme_risk), ("globex", globex_risk)):
        ts = owner.tenant(name)
        assert [e.event_type for e in ts.history(risk)] == ["risk.created"]
        assert ts.get(risk).values["severity"] == "high"
        load(owner, name, f"more.{name}.example")
        assert [e.seq for e in ts.events()] == [1, 2, 3, 4, 5, 6]  # gap-free: nothing forged
    owner.close()


def test_migrations_and_forced_downgrades_run_as_a_non_superuser_owner(owned, runner):
    owner_url, app_url = owned()
    Cli(runner, owner_url)("init")
    owner = Store(owner_url)
    populate(owner)
    with owner.engine.connect() as c:  # really no superuser, really forced row-level security
        assert c.execute(text("SELECT rolsuper OR rolbypassrls FROM pg_roles "
                              "WHERE rolname = current_user")).scalar() is False
        assert c.execute(text("SELECT relforcerowsecurity FROM pg_class WHERE oid = 'node'::regclass")).scalar()
    # The owner measures (under FORCE) what a downgrade would lose, in every tenant table.
    lost = {loss.what for loss in migrate.losses(owner.engine, "0003")}
    assert {"import_run", "import_file", "setting", "risk.evidence"} <= lost
    # A lossless round trip of 0007 itself, from below the later revisions that would lose data.
    migrate.downgrade(owner.engine, "0007", force=True, actor="tester")
    before = content(owner)
    migrate.downgrade(owner.engine, "0006")
    migrate.upgrade(owner.engine, "0007")
    assert content(owner) == before
    migrate.upgrade(owner.engine)
    # What later migrations do as the owner under FORCE: read every tenant, number events.
    with owner.engine.begin() as c:
        assert c.execute(text("SELECT count(DISTINCT tenant_id) FROM node")).scalar() == 1
        last = c.execute(text("UPDATE tenant SET event_seq = event_seq + 1 "
                              "WHERE name = 'acme' RETURNING event_seq")).scalar()
        txn = c.execute(text("SELECT nextval('event_txn')")).scalar()
        c.execute(text("INSERT INTO event (tenant_id, txn, pos, occurred_at, entity_key, entity_kind, "
                       "event_type, diff, actor, source, correlation_id) SELECT id, :x, 1, now(), "
                       "'setting:x', 'setting', 'setting.changed', '{}', 'm', 'migration', 'c' "
                       "FROM tenant WHERE name = 'acme'"), {"x": txn})
        c.execute(text("INSERT INTO event_commit SELECT id, :x, :s - 1, :s FROM tenant "
                       "WHERE name = 'acme'"), {"x": txn, "s": last})
        c.rollback()
    # A forced downgrade that removes data through events, and the way back.
    migrate.downgrade(owner.engine, "0003", force=True, actor="tester")
    migrate.upgrade(owner.engine)
    ts = owner.tenant("acme")
    assert {e.event_type for e in ts.events(limit=1000) if e.source == "migration"} >= {
        "detection.deleted", "risk.updated", "setting.changed"}
    owner.close()
    # And the application login still works on the result.
    app = Store(app_url)
    assert app.tenant("acme").count("asset") >= 1
    app.close()


def _revoke_everything(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM bastion_app"))
        c.execute(text("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM bastion_app, PUBLIC"))
        c.execute(text("REVOKE USAGE ON SCHEMA public FROM bastion_app"))
        for (table, policy) in c.execute(text("SELECT tablename, policyname FROM pg_policies")).all():
            c.execute(text(f'DROP POLICY "{policy}" ON "{table}"'))
    engine.dispose()


def test_db_grants_reapplies_what_was_revoked(owned, runner):
    owner_url, app_url = owned()
    own, app = Cli(runner, owner_url), Cli(runner, app_url)
    own("init")
    app("add", "asset", "--identifier", "a.acme.example")
    _revoke_everything(owner_url)
    assert "permission denied" in one_error_line(app("list", "assets", code=1))
    assert f"revision: {migrate.head()} (head)" in own("db", "upgrade").stdout  # nothing to do there
    app("list", "assets", code=1)
    assert "grants, policies and functions applied" in own("db", "grants").stdout
    assert [i["key"] for i in app.json("list", "assets")["items"]] == [A]
    own("db", "grants")  # idempotent
    own("init")  # and init re-applies them too
    app("add", "asset", "--identifier", "b.acme.example")
    assert len(app.json("list", "assets")["items"]) == 2


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump/pg_restore not installed")
def test_a_restore_without_owners_and_grants_is_repaired_by_db_grants(owned, runner, tmp_path):
    src_owner, _ = owned()
    Cli(runner, src_owner)("init")
    Cli(runner, src_owner)("add", "asset", "--identifier", "a.acme.example")
    dst_owner, dst_app = owned()
    dump = tmp_path / "bastion.dump"
    src, dst = make_url(src_owner), make_url(dst_owner)
    # FORCE row-level security: the owner's dump must ask for its policy (unbound: every row).
    subprocess.run(["pg_dump", "--enable-row-security", "-Fc", "-f", str(dump), "-h", src.host, "-p", str(src.port),
                    "-U", OWNER, src.database], check=True)
    # The database is restored, its schema revision included; `bastion_app` gets no grant.
    subprocess.run(["pg_restore", "-O", "-x", "-h", dst.host, "-p", str(dst.port), "-U", OWNER,
                    "-d", dst.database, str(dump)], check=True)
    _revoke_everything(dst_owner)  # a cluster where bastion_app had never been granted anything
    own, app = Cli(runner, dst_owner), Cli(runner, dst_app)
    assert "permission denied for table" in one_error_line(app("list", "assets", code=1))
    assert "(head)" in own("db", "upgrade").stdout
    own("db", "grants")
    assert [i["key"] for i in app.json("list", "assets")["items"]] == [A]


def test_the_event_log_refuses_rewriting_on_both_engines(store):
    """What SQLite can enforce without roles (a trigger), PostgreSQL enforces as well, for any
    login including the owner."""
    store.add_tenant("acme")
    risk = load(store, "acme", "a.acme.example")
    for sql in ("UPDATE event SET actor = 'mallory'", "DELETE FROM event"):
        with pytest.raises(DBAPIError, match="append-only"):
            with store.engine.begin() as c:
                c.execute(text(sql))
    assert [e.actor for e in store.tenant("acme").history(risk)] == ["owner"]


def test_db_grants_on_both_engines(cli, engine_name):
    out = cli("db", "grants").stdout
    if engine_name == "sqlite":
        assert "SQLite has no roles: nothing to grant" in out
    else:
        assert "grants, policies and functions applied to" in out
