"""least privilege on PostgreSQL: trusted tenant binding, FORCE row-level security, reserved
event numbers, an application role that can run every command but init and migrations

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

PostgreSQL only (SQLite has no roles; nothing changes there). Applies the access model of
`bastion/store/access.py` (docs/security.md): SECURITY DEFINER functions bind a transaction to
one tenant once (`bastion_set_tenant`) and hand out event numbers for it
(`bastion_lock_seq`, `bastion_reserve_seq`); every policy compares with `bastion_tenant()`
instead of a setting the application could change; FORCE ROW LEVEL SECURITY on every tenant
table and `tenant`, with a policy that lets the owner see every row only in a transaction bound
to no tenant (migrations keep working for a non-superuser owner); `bastion_app` loses
`UPDATE (event_seq)` on `tenant`, sees only its tenant's row of it, and may read
`alembic_version`; a statement trigger refuses events outside the numbers reserved in the
transaction. `bastion db grants` re-applies the same model (it reads the tables from the
catalog, so later revisions that add tenant tables call `access.apply` again).

The downgrade restores revision 0002's model (policies on the `bastion.tenant_id` setting, no
FORCE, `UPDATE (event_seq)`): grants, policies, functions and a trigger only, no data.
"""
from alembic import op

from bastion.store import access

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APP_ROLE = "bastion_app"
CURRENT_TENANT = "NULLIF(current_setting('bastion.tenant_id', true), '')::integer"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        access.apply(op.get_bind())


def lost_on_downgrade(bind):
    """Grants, policies, functions and a trigger only: no data is lost (lossless)."""
    return []


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS event_reserved ON event")
    tables = [r[0] for r in bind.exec_driver_sql("""
        SELECT c.relname FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
           AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                       AND a.attname = 'tenant_id' AND NOT a.attisdropped)""")]
    for table in tables:
        op.execute(f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY')
        op.execute(f'DROP POLICY IF EXISTS bastion_owner ON "{table}"')
        op.execute(f'DROP POLICY IF EXISTS tenant_isolation ON "{table}"')
        op.execute(f'CREATE POLICY tenant_isolation ON "{table}" TO {APP_ROLE} '
                   f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})")
    op.execute("ALTER TABLE tenant NO FORCE ROW LEVEL SECURITY")
    op.execute("DROP POLICY IF EXISTS bastion_owner ON tenant")
    op.execute("DROP POLICY IF EXISTS tenant_self ON tenant")
    op.execute(f"CREATE POLICY tenant_self ON tenant TO {APP_ROLE} "
               f"USING (id = {CURRENT_TENANT} OR name = current_setting('bastion.tenant_name', true))")
    op.execute(f"GRANT UPDATE (event_seq) ON tenant TO {APP_ROLE}")
    op.execute(f"REVOKE ALL ON alembic_version FROM {APP_ROLE}")
    for fn in (*access.APP_FUNCTIONS, *access.INTERNAL_FUNCTIONS):
        op.execute(f"DROP FUNCTION IF EXISTS {fn}")
