"""API keys of the server: `api_key`, one row per key, the secret kept only as a hash

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

`bastion key create|list|revoke` and `bastion serve` (bastion.store.keys). A tenant table:
row-level security and the application role's grants are applied to it like the others.
Downgrade drops the table: every key is lost (lossy when there are keys).
"""
import sqlalchemy as sa
from alembic import op

from bastion.store import access, migrate
from bastion.store.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'analyst', 'uploader', 'reader')",
                           name=op.f("ck_api_key_role_domain")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_api_key_tenant_id_tenant"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_api_key")),
        sqlite_with_rowid=False,
    )
    op.create_index("uq_api_key_live_name", "api_key", ["tenant_id", "name"], unique=True,
                    sqlite_where=sa.text("revoked_at IS NULL"),
                    postgresql_where=sa.text("revoked_at IS NULL"))
    if op.get_bind().dialect.name == "postgresql":
        access.apply(op.get_bind())


def lost_on_downgrade(bind):
    """Every API key."""
    return migrate.rows_of(bind, ["api_key"], "every API key (the server refuses them)")


def downgrade() -> None:
    op.drop_index("uq_api_key_live_name", table_name="api_key")
    op.drop_table("api_key")
