"""reusable import files: what each imported file observed, so the same bytes need no re-parse

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

`import_file` records every file an import read whole, with its SHA-256, the fingerprint of the
parser code and settings that shaped the result, and the tenant's event counter after it.
`import_file_node` and `import_file_edge` list the nodes and edges it observed (kept for the
newest files only). Tenant tables: row-level security and privileges for the application role
on PostgreSQL, as revision 0002 set up for the others.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APP_ROLE = "bastion_app"
CURRENT_TENANT = "NULLIF(current_setting('bastion.tenant_id', true), '')::integer"
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
NEW_TABLES = ("import_file", "import_file_node", "import_file_edge")


def upgrade() -> None:
    op.create_table(
        "import_file",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("format", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_seq", sa.BigInteger(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=True),
        sa.Column("counts", JSON, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_import_file_tenant_id_tenant"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_import_file")),
        sqlite_with_rowid=False,
    )
    op.create_index(op.f("ix_import_file_tenant_id_sha256"), "import_file", ["tenant_id", "sha256"],
                    unique=False)
    op.create_table(
        "import_file_node",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "file_id"], ["import_file.tenant_id", "import_file.id"],
                                name=op.f("fk_import_file_node_tenant_id_import_file"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "file_id", "node_id", name=op.f("pk_import_file_node")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "import_file_edge",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "file_id"], ["import_file.tenant_id", "import_file.id"],
                                name=op.f("fk_import_file_edge_tenant_id_import_file"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "file_id", "source_id", "kind", "target_id",
                                name=op.f("pk_import_file_edge")),
        sqlite_with_rowid=False,
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in NEW_TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"CREATE POLICY tenant_isolation ON {table} TO {APP_ROLE} "
                       f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})")
            op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")


def lost_on_downgrade(bind):
    from bastion.store import migrate

    return migrate.rows_of(bind, NEW_TABLES, "the next import of those files parses them again")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in NEW_TABLES:
            op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
    op.drop_table("import_file_edge")
    op.drop_table("import_file_node")
    op.drop_index(op.f("ix_import_file_tenant_id_sha256"), table_name="import_file")
    op.drop_table("import_file")
