"""graph statistics for the traversal cost guard

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Counts per tenant and node kind / relationship kind, kept by the write path; the largest
fan-out per relationship kind, refreshed on demand. Existing data is counted on upgrade.
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APP_ROLE = "bastion_app"
CURRENT_TENANT = "NULLIF(current_setting('bastion.tenant_id', true), '')::integer"


def upgrade() -> None:
    op.create_table(
        "graph_stats",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("max_out", sa.BigInteger(), nullable=True),
        sa.Column("max_in", sa.BigInteger(), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_graph_stats_tenant_id_tenant"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "name", name=op.f("pk_graph_stats")),
        sqlite_with_rowid=False,
    )
    op.execute("INSERT INTO graph_stats (tenant_id, name, count) "
               "SELECT tenant_id, kind, count(*) FROM node GROUP BY tenant_id, kind")
    op.execute("INSERT INTO graph_stats (tenant_id, name, count) "
               "SELECT tenant_id, kind, count(*) FROM edge GROUP BY tenant_id, kind")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE graph_stats ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_isolation ON graph_stats TO {APP_ROLE} "
                   f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})")
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON graph_stats TO {APP_ROLE}")


def lost_on_downgrade(bind):
    """The table goes and the upgrade recounts it: what a recount does not restore is lost (the
    refreshed fan-out figures, and any count that differs from the stored nodes and edges)."""
    from bastion.store import migrate

    return [("graph_stats", migrate.count(bind, """
        SELECT count(*) FROM graph_stats g LEFT JOIN (
            SELECT tenant_id, kind AS name, count(*) AS n FROM node GROUP BY tenant_id, kind
            UNION ALL
            SELECT tenant_id, kind AS name, count(*) AS n FROM edge GROUP BY tenant_id, kind) r
          ON r.tenant_id = g.tenant_id AND r.name = g.name
        WHERE g.max_out IS NOT NULL OR g.max_in IS NOT NULL OR g.refreshed_at IS NOT NULL
           OR g.count <> coalesce(r.n, 0)"""), "rows",
             "fan-out figures or counts the upgrade's recount does not restore")]


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"REVOKE ALL ON graph_stats FROM {APP_ROLE}")
    op.drop_table("graph_stats")
