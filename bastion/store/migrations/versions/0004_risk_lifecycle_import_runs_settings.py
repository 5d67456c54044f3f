"""risk lifecycle and enrichment fields, event notes, import runs and tenant settings

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Risks gain the source that last reported them, accumulated evidence, CISA KEV and FIRST EPSS
enrichment and a priority score. Events gain a note (why a change happened, when it needs
saying). `import_run` records every `bastion import`; `setting` holds per-tenant settings. Both new
tables are tenant tables: row-level security and privileges for the application role on
PostgreSQL, as revision 0002 set up for the others.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APP_ROLE = "bastion_app"
CURRENT_TENANT = "NULLIF(current_setting('bastion.tenant_id', true), '')::integer"
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
NEW_TABLES = ("import_run", "setting")
RISK_FIELDS = ("source", "evidence", "kev", "kev_due", "kev_ransomware", "epss", "epss_percentile",
               "priority")
REASON = "schema downgraded below 0004: the field no longer exists"


def upgrade() -> None:
    op.create_table(
        "import_run",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("files", JSON, nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("errors", JSON, nullable=False),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'partial', 'failed')",
                           name=op.f("ck_import_run_status_domain")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_import_run_tenant_id_tenant"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_import_run")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "setting",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_setting_tenant_id_tenant"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "name", name=op.f("pk_setting")),
        sqlite_with_rowid=False,
    )
    # A plain ADD COLUMN on both engines: the event table (and SQLite's append-only triggers on
    # it) is not rebuilt.
    op.add_column("event", sa.Column("note", sa.Text(), nullable=True))
    with op.batch_alter_table("risk", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("evidence", JSON, nullable=True))
        batch_op.add_column(sa.Column("kev", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("kev_due", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("kev_ransomware", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("epss", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("epss_percentile", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.Float(), nullable=True))
        batch_op.create_check_constraint(op.f("ck_risk_epss_range"), '"epss" >= 0 AND "epss" <= 1')
        batch_op.create_check_constraint(op.f("ck_risk_epss_percentile_range"),
                                         '"epss_percentile" >= 0 AND "epss_percentile" <= 1')
        batch_op.create_check_constraint(op.f("ck_risk_priority_range"),
                                         '"priority" >= 0 AND "priority" <= 100')
        batch_op.create_index(batch_op.f("ix_risk_tenant_id_priority"), ["tenant_id", "priority"], unique=False)
        batch_op.create_index(batch_op.f("ix_risk_tenant_id_source"), ["tenant_id", "source"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for table in NEW_TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"CREATE POLICY tenant_isolation ON {table} TO {APP_ROLE} "
                       f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})")
            op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")


def lost_on_downgrade(bind):
    from bastion.store import migrate

    return [*migrate.values_of(bind, "risk", RISK_FIELDS,
                               "a risk.updated event per risk; importing the scan again restores them"),
            *migrate.values_of(bind, "event", ("note",)),
            *migrate.rows_of(bind, ("import_run",)),
            *migrate.rows_of(bind, ("setting",), "a setting.changed event each")]


def downgrade() -> None:
    from bastion.store import migrate

    migrate.drop_fields(op.get_bind(), "risk", RISK_FIELDS, REASON)
    migrate.remove_settings(op.get_bind(), REASON)
    if op.get_bind().dialect.name == "postgresql":
        for table in NEW_TABLES:
            op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
    with op.batch_alter_table("risk", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_tenant_id_source"))
        batch_op.drop_index(batch_op.f("ix_risk_tenant_id_priority"))
        batch_op.drop_constraint(op.f("ck_risk_priority_range"), type_="check")
        batch_op.drop_constraint(op.f("ck_risk_epss_percentile_range"), type_="check")
        batch_op.drop_constraint(op.f("ck_risk_epss_range"), type_="check")
        for column in ("priority", "epss_percentile", "epss", "kev_ransomware", "kev_due", "kev",
                       "evidence", "source"):
            batch_op.drop_column(column)
    # Not through batch mode: a SQLite table copy would lose the append-only triggers.
    op.drop_column("event", "note")
    op.drop_table("setting")
    op.drop_table("import_run")
