"""event by correlation id: what one import run (or one request) changed, without a scan of the log

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

`bastion changes --run N` and `--correlation-id` read the events of one correlation id; the
index `(tenant_id, correlation_id, seq)` keeps that a range scan in event order. An index only:
lossless both ways.
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEX = "ix_event_tenant_id_correlation_id_seq"


def upgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.create_index(INDEX, ["tenant_id", "correlation_id", "seq"], unique=False)


def lost_on_downgrade(bind):
    """An index only: nothing is lost."""
    return []


def downgrade() -> None:
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_index(INDEX)
