"""tenant isolation (row-level security, application role) and an append-only event log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

PostgreSQL: every tenant table gets a row-level security policy keyed on
`current_setting('bastion.tenant_id')`; the non-owner role `bastion_app`, which the store
switches to for every tenant transaction, gets only the privileges it needs (SELECT and INSERT
on the event log, never UPDATE or DELETE). Both engines: triggers refuse UPDATE and DELETE of
events.
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APP_ROLE = "bastion_app"
# Frozen at this revision on purpose: a later kind adds its table in its own revision.
TENANT_TABLES = ("node", "edge", "event", "asset", "port", "technology", "attribute", "risk",
                 "seed", "capability", "job", "integration")
CURRENT_TENANT = "NULLIF(current_setting('bastion.tenant_id', true), '')::integer"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgres_up()
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER event_no_{action.lower()} BEFORE {action} ON event "
                f"BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END"
            )


def lost_on_downgrade(bind):
    """Policies, grants and triggers only: no data is lost (lossless)."""
    return []


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _postgres_down()
    else:
        op.execute("DROP TRIGGER IF EXISTS event_no_update")
        op.execute("DROP TRIGGER IF EXISTS event_no_delete")


def _postgres_up() -> None:
    op.execute(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN;
            END IF;
        END $$""")
    # The migrating (owning) role may switch to the application role for tenant work.
    op.execute(f"GRANT {APP_ROLE} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} TO {APP_ROLE} "
            f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )
        grants = "SELECT, INSERT" if table == "event" else "SELECT, INSERT, UPDATE, DELETE"
        op.execute(f"GRANT {grants} ON {table} TO {APP_ROLE}")
    op.execute("ALTER TABLE tenant ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_self ON tenant TO {APP_ROLE} "
        f"USING (id = {CURRENT_TENANT} OR name = current_setting('bastion.tenant_name', true))"
    )
    op.execute(f"GRANT SELECT ON tenant TO {APP_ROLE}")
    op.execute(f"GRANT UPDATE (event_seq) ON tenant TO {APP_ROLE}")
    op.execute("""
        CREATE FUNCTION bastion_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the event log is append-only'; END $$""")
    op.execute("""
        CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON event
        FOR EACH ROW EXECUTE FUNCTION bastion_event_append_only()""")


def _postgres_down() -> None:
    op.execute("DROP TRIGGER IF EXISTS event_append_only ON event")
    op.execute("DROP FUNCTION IF EXISTS bastion_event_append_only()")
    for table in (*TENANT_TABLES, "tenant"):
        policy = "tenant_self" if table == "tenant" else "tenant_isolation"
        op.execute(f"DROP POLICY IF EXISTS {policy} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}")
    # The role is cluster-wide and may serve other databases: it is left in place.
