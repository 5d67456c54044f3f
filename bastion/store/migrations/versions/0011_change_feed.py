"""Change feed: webhook subscriptions and their delivery log, the relay's cursors, and on
PostgreSQL a NOTIFY at commit of every transaction that appends events

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08

`bastion webhook add|list|remove|test|redeliver` and `bastion relay` (bastion.feed,
bastion.store.feed). Tenant tables: row-level security and the application role's grants are
applied to them like the others. The statement trigger `event_notify` sends
`NOTIFY bastion_event, '<tenant id>'` (delivered when the transaction commits) so a relay that
LISTENs wakes at once instead of polling. Downgrade drops the tables (every subscription, its
delivery log and the relay's positions are lost: lossy when there are rows) and the trigger.
"""
import sqlalchemy as sa
from alembic import op

from bastion.store import access, migrate
from bastion.store.tables import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NOTIFY_CHANNEL = "bastion_event"


def upgrade() -> None:
    op.create_table(
        "webhook",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", sa.String(length=1000), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("paused_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.CheckConstraint("state IN ('active', 'paused')", name=op.f("ck_webhook_state_domain")),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_webhook_tenant_id_tenant"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_webhook")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "webhook_delivery",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("attempted_at", UTCDateTime(), nullable=False),
        sa.Column("seq_from", sa.BigInteger(), nullable=False),
        sa.Column("seq_to", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "webhook_id"], ["webhook.tenant_id", "webhook.id"],
                                name=op.f("fk_webhook_delivery_tenant_id_webhook"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "webhook_id", "id", name=op.f("pk_webhook_delivery")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "relay_cursor",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("sink", sa.String(length=200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_relay_cursor_tenant_id_tenant"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "sink", name=op.f("pk_relay_cursor")),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # Once per INSERT statement on event, no transition table (the write path's hottest
        # statement pays nothing per row); the payload is the bound tenant, empty for the
        # owner's unbound transactions (migrations): a relay then looks at every tenant.
        # NOTIFY is queued until commit and folded when repeated in one transaction.
        op.execute(f"""CREATE OR REPLACE FUNCTION bastion_event_notify() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{NOTIFY_CHANNEL}', coalesce(bastion_tenant()::text, ''));
                RETURN NULL;
            END $$""")
        op.execute("CREATE TRIGGER event_notify AFTER INSERT ON event "
                   "FOR EACH STATEMENT EXECUTE FUNCTION bastion_event_notify()")
        access.apply(bind)


def lost_on_downgrade(bind):
    """Every webhook subscription, its delivery log and the relay's positions."""
    return migrate.rows_of(bind, ["webhook", "webhook_delivery", "relay_cursor"],
                           "the change feed's subscriptions, delivery log and relay positions")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS event_notify ON event")
        op.execute("DROP FUNCTION IF EXISTS bastion_event_notify()")
    op.drop_table("relay_cursor")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook")
