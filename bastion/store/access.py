"""Least privilege on PostgreSQL: the application role, its grants, row-level security and the
trusted functions that bind a transaction to one tenant (docs/security.md).

The application logs in as a non-owner member of `bastion_app`. Every tenant transaction starts
with `bastion_set_tenant(id)`, a SECURITY DEFINER function that records the tenant in a
temporary table owned by the table owner (the application can neither read nor change it) and
refuses a second call in the same transaction. Policies compare `tenant_id` with
`bastion_tenant()`, which reads that record; a GUC the application could set is no longer
trusted. The application has no UPDATE on `tenant` and may only read `event_commit`: a
transaction's events carry the id `bastion_begin_events()` gave it, a statement trigger on
`event` refuses, once per INSERT statement (bulk inserts keep their speed), any event of another
tenant or transaction or out of place, and `bastion_commit_events()` numbers them at the end
under the bound tenant's counter. Writers that read before they write serialize on
`bastion_hold_writes()`, an advisory lock per tenant.

Every tenant table has FORCE ROW LEVEL SECURITY, so the table owner is under the policies too:
its own policy (`bastion_owner`) lets it see every row only in a transaction bound to no tenant
(migrations, `bastion db grants`, tenant administration) and confines it to the tenant once a
transaction is bound.

`apply(conn)` is idempotent and reads the tables from the catalog (every table with a
`tenant_id` column is a tenant table, every other one but `tenant` is shared and read-only for
the application): revision 0007 runs it, and `bastion init` / `bastion db grants` run it again,
e.g. after `pg_restore -O -x`, which restores neither owners nor grants.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from bastion.errors import ConfigError
from bastion.store.engine import APP_ROLE

# Advisory lock class marking "this transaction is bound to a tenant" (key 2: the backend pid).
BOUND_LOCK = 0x42A5
# Advisory lock class of a tenant's write lock (key 2: the tenant id).
WRITE_LOCK = 0x42A6
APP_FUNCTIONS = ("bastion_set_tenant(integer)", "bastion_set_tenant_named(text)",
                 "bastion_tenant()", "bastion_hold_writes()", "bastion_begin_events()",
                 "bastion_commit_events()")
INTERNAL_FUNCTIONS = ("bastion_event_reserved()",)
# What the application may do to the event log: append events; read the commits (written by
# bastion_commit_events only).
APPEND_ONLY = {"event": "SELECT, INSERT", "event_commit": "SELECT"}


@dataclass(frozen=True)
class Applied:
    tenant_tables: int
    shared_tables: int
    owner: str


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _functions(schema: str) -> list[str]:
    s = _q(schema)
    path = f"SET search_path = pg_catalog, {s}, pg_temp"
    owned = ("(SELECT c.relowner FROM pg_class c WHERE c.oid = rel) = "
             "(SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user)")
    refuse = "RAISE EXCEPTION '{}' USING ERRCODE = 'insufficient_privilege';".format
    already = refuse("the tenant of this transaction is already set")
    unbound = f"IF t IS NULL THEN {refuse('no tenant is set for this transaction')} END IF;"
    return [
        # The bound tenant, or NULL: only a binding table owned by the definer is believed (the
        # application could create a temporary table of the same name in its own session).
        f"""CREATE OR REPLACE FUNCTION bastion_tenant() RETURNS integer
        LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SECURITY DEFINER {path} AS $$
        DECLARE rel oid := to_regclass('pg_temp.bastion_bound'); t integer;
        BEGIN
            IF rel IS NULL OR NOT {owned} THEN RETURN NULL; END IF;
            SELECT b.tenant INTO t FROM pg_temp.bastion_bound b;
            RETURN t;
        END $$""",
        f"""CREATE OR REPLACE FUNCTION bastion_set_tenant(t integer) RETURNS integer
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER {path} AS $$
        DECLARE rel oid := to_regclass('pg_temp.bastion_bound');
        BEGIN
            IF EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
                       AND classid = {BOUND_LOCK}::oid AND objid = pg_backend_pid()::oid
                       AND objsubid = 2) THEN
                {already}
            END IF;
            IF rel IS NULL THEN
                CREATE TEMPORARY TABLE bastion_bound (tenant integer NOT NULL, txn bigint,
                                                      events bigint NOT NULL DEFAULT 0)
                    ON COMMIT DELETE ROWS;
            ELSIF NOT {owned} THEN
                RAISE EXCEPTION 'pg_temp.bastion_bound was not created by Bastion'
                    USING ERRCODE = 'insufficient_privilege';
            ELSIF EXISTS (SELECT FROM pg_temp.bastion_bound) THEN
                {already}
            END IF;
            IF NOT EXISTS (SELECT FROM {s}.tenant WHERE id = t) THEN
                RAISE EXCEPTION 'no tenant with id %', t USING ERRCODE = 'no_data_found';
            END IF;
            PERFORM pg_advisory_xact_lock({BOUND_LOCK}, pg_backend_pid());
            INSERT INTO pg_temp.bastion_bound (tenant) VALUES (t);
            RETURN t;
        END $$""",
        f"""CREATE OR REPLACE FUNCTION bastion_set_tenant_named(n text) RETURNS integer
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER {path} AS $$
        DECLARE t integer;
        BEGIN
            IF bastion_tenant() IS NOT NULL THEN
                {already}
            END IF;
            SELECT id INTO t FROM {s}.tenant WHERE name = n;
            IF t IS NULL THEN RETURN NULL; END IF;
            RETURN bastion_set_tenant(t);
        END $$""",
        # Writers that read before they write serialize on this lock (Scope.hold_writes).
        f"""CREATE OR REPLACE FUNCTION bastion_hold_writes() RETURNS void
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER {path} AS $$
        DECLARE t integer := bastion_tenant();
        BEGIN
            {unbound}
            PERFORM pg_advisory_xact_lock({WRITE_LOCK}, t);
        END $$""",
        # The transaction's id in the event log, taken at its first event.
        f"""CREATE OR REPLACE FUNCTION bastion_begin_events() RETURNS bigint
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER {path} AS $$
        DECLARE t integer := bastion_tenant(); x bigint;
        BEGIN
            {unbound}
            SELECT b.txn INTO x FROM pg_temp.bastion_bound b;
            IF x IS NULL THEN
                x := nextval('{s}.event_txn');
                UPDATE pg_temp.bastion_bound SET txn = x, events = 0;
            END IF;
            RETURN x;
        END $$""",
        # Last in the transaction: number its events after every committed one, under the
        # tenant's counter (held from here to the commit only). Returns the counter after them.
        f"""CREATE OR REPLACE FUNCTION bastion_commit_events() RETURNS bigint
        LANGUAGE plpgsql VOLATILE SECURITY DEFINER {path} AS $$
        DECLARE t integer := bastion_tenant(); x bigint; n bigint; top bigint;
        BEGIN
            {unbound}
            SELECT b.txn, b.events INTO x, n FROM pg_temp.bastion_bound b;
            UPDATE {s}.tenant SET event_seq = event_seq + coalesce(n, 0) WHERE id = t
                RETURNING event_seq INTO top;
            IF n > 0 THEN
                INSERT INTO {s}.event_commit (tenant_id, txn, base, last) VALUES (t, x, top - n, top);
            END IF;
            UPDATE pg_temp.bastion_bound SET txn = NULL, events = 0;
            RETURN top;
        END $$""",
        # Once per INSERT statement on event: every row of the bound tenant and of this
        # transaction, at the next positions (1, 2, … with no gap). A transaction bound to no
        # tenant can only be the owner's (the application sees nothing then): migrations and
        # tenant imports append events that way.
        f"""CREATE OR REPLACE FUNCTION bastion_event_reserved() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER {path} AS $$
        DECLARE t integer := bastion_tenant(); x bigint; n bigint; c bigint; lo bigint; hi bigint;
                bad bigint;
        BEGIN
            IF t IS NULL THEN RETURN NULL; END IF;
            SELECT b.txn, b.events INTO x, n FROM pg_temp.bastion_bound b;
            SELECT count(*), min(e.pos), max(e.pos),
                   count(*) FILTER (WHERE e.tenant_id <> t OR e.txn IS DISTINCT FROM x)
              INTO c, lo, hi, bad FROM bastion_new_events e;
            IF x IS NULL OR bad > 0 OR lo <> n + 1 OR hi <> n + c THEN
                RAISE EXCEPTION '% event(s) of another tenant or transaction, or not at the next '
                    'positions of this transaction (bastion_begin_events)', greatest(bad, 1)
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            UPDATE pg_temp.bastion_bound SET events = n + c;
            RETURN NULL;
        END $$""",
    ]


def _tables(conn: Connection) -> tuple[list[tuple[str, str]], list[str]]:
    """(tenant tables with their owner, shared tables) of the current schema."""
    rows = conn.execute(text("""
        SELECT c.relname, pg_get_userbyid(c.relowner),
               EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                       AND a.attname = 'tenant_id' AND NOT a.attisdropped)
          FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
         ORDER BY c.relname""")).all()
    tenant_tables = [(name, owner) for name, owner, scoped in rows if scoped]
    shared = [name for name, _, scoped in rows if not scoped and name not in ("tenant",)]
    return tenant_tables, shared


def apply(conn: Connection) -> Applied:
    """Create the role if missing and (re-)apply grants, policies, functions and the event
    trigger. Idempotent; must run as the owner of the tables (or a superuser)."""
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    conn.execute(text(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN;
            END IF;
            IF NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN
                GRANT {APP_ROLE} TO CURRENT_USER;
            END IF;
        END $$"""))
    conn.execute(text(f"GRANT USAGE ON SCHEMA {_q(schema)} TO {APP_ROLE}"))
    for sql in _functions(schema):
        conn.execute(text(sql))
    for fn in (*APP_FUNCTIONS, *INTERNAL_FUNCTIONS):
        conn.execute(text(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC"))
    for fn in APP_FUNCTIONS:
        conn.execute(text(f"GRANT EXECUTE ON FUNCTION {fn} TO {APP_ROLE}"))

    bound = "(SELECT bastion_tenant())"
    tenant_tables, shared = _tables(conn)
    owner = conn.execute(text("SELECT pg_get_userbyid(relowner) FROM pg_class "
                              "WHERE oid = 'tenant'::regclass")).scalar_one()
    for table, column, grants, policy in (
            *((t, "tenant_id", APPEND_ONLY.get(t, "SELECT, INSERT, UPDATE, DELETE"),
               "tenant_isolation") for t, _ in tenant_tables),
            ("tenant", "id", "SELECT", "tenant_self")):
        t = _q(table)
        table_owner = dict(tenant_tables).get(table, owner)
        conn.execute(text(f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY"))
        conn.execute(text(f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY"))
        for name in (policy, "bastion_owner"):
            conn.execute(text(f"DROP POLICY IF EXISTS {name} ON {t}"))
        mine = f"{column} = {bound}"
        conn.execute(text(f"CREATE POLICY {policy} ON {t} TO {APP_ROLE} USING ({mine}) WITH CHECK ({mine})"))
        either = f"{bound} IS NULL OR {mine}"
        conn.execute(text(f"CREATE POLICY bastion_owner ON {t} TO {_q(table_owner)} "
                          f"USING ({either}) WITH CHECK ({either})"))
        conn.execute(text(f"REVOKE ALL ON {t} FROM {APP_ROLE}"))
        conn.execute(text(f"GRANT {grants} ON {t} TO {APP_ROLE}"))
    for table in shared:  # the ATT&CK catalog, alembic_version: read only
        conn.execute(text(f"REVOKE ALL ON {_q(table)} FROM {APP_ROLE}"))
        conn.execute(text(f"GRANT SELECT ON {_q(table)} TO {APP_ROLE}"))
    conn.execute(text("DROP TRIGGER IF EXISTS event_reserved ON event"))
    conn.execute(text("CREATE TRIGGER event_reserved AFTER INSERT ON event "
                      "REFERENCING NEW TABLE AS bastion_new_events "
                      "FOR EACH STATEMENT EXECUTE FUNCTION bastion_event_reserved()"))
    return Applied(len(tenant_tables) + 1, len(shared), owner)


def require_owner(engine: Engine, command: str) -> None:
    """Refuse, with one clear line, a schema or grant change attempted by a login that does not
    own the tables (the application login): only the owner can do it."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        user, owner, ok = conn.execute(text("""
            SELECT current_user, pg_get_userbyid(c.relowner),
                   pg_has_role(current_user, c.relowner, 'USAGE')
              FROM pg_class c WHERE c.oid = to_regclass('tenant')""")).one_or_none() or (None, None, True)
    if not ok:
        raise ConfigError(
            f"`{command}` changes the schema, grants or policies and must run as the owner of "
            f"the tables ({owner}); {user} is not: connect as {owner} for this command (the "
            f"application login only needs membership of {APP_ROLE})")


def apply_grants(engine: Engine, command: str = "bastion db grants") -> Applied | None:
    """`bastion db grants`: apply() in a transaction of its own, as the owner. None on SQLite,
    which has no roles."""
    if engine.dialect.name != "postgresql":
        return None
    require_owner(engine, command)
    with engine.begin() as conn:
        if conn.execute(text("SELECT to_regclass('tenant') IS NULL")).scalar_one():
            raise ConfigError("the database is not initialized: run `bastion init` first")
        return apply(conn)
