"""Event numbers given at commit: `event` keyed by (tenant_id, txn, pos), `event_commit`

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

An event is written with its transaction (`txn`) and its place in it (`pos`); the transaction's
row in `event_commit`, written last under the tenant's counter, gives its events their feed
numbers `base + pos`. A long import no longer holds the counter while it runs (issue 11, point
3). Existing events keep their numbers: they become transaction 0 with base 0 (`pos` = their
old `seq`), one `event_commit` row per tenant that has events. On PostgreSQL the sequence
`event_txn` hands out transaction ids and the trusted functions change (`bastion_hold_writes`,
`bastion_begin_events`, `bastion_commit_events` replace `bastion_lock_seq` and
`bastion_reserve_seq`; access.apply).

Downgrade numbers every event back (`seq = base + pos`); lossy in one respect: which events
were committed together (kept only as transaction 0 by a new upgrade). The trusted functions of
the older revision are not restored: run `bastion db grants` with the release you go back to.
"""
import sqlalchemy as sa
from alembic import op

from bastion.store import access, migrate
from bastion.store.tables import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

OLD_INDEXES = {"ix_event_tenant_id_entity_key_seq": ["tenant_id", "entity_key", "seq"],
               "ix_event_tenant_id_correlation_id_seq": ["tenant_id", "correlation_id", "seq"]}
NEW_INDEXES = {"ix_event_tenant_id_entity_key_txn_pos": ["tenant_id", "entity_key", "txn", "pos"],
               "ix_event_tenant_id_correlation_id_txn_pos": ["tenant_id", "correlation_id", "txn", "pos"]}
# Every column of `event` but its number, in table order.
BODY = ["occurred_at", "entity_key", "entity_kind", "entity_version", "event_type", "diff", "actor",
        "source", "correlation_id", "note"]


def _sqlite_rebuild(number: list[sa.Column], select_number: str, join: str,
                    indexes: dict[str, list[str]]) -> None:
    """SQLite changes a primary key by copying the table: `event` with the given number
    columns, filled from the old one."""
    from bastion.store.tables import JSONType, KeyType

    op.create_table(
        "event_rebuilt",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        *number,
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("entity_key", KeyType, nullable=False),
        sa.Column("entity_kind", sa.String(32), nullable=False),
        sa.Column("entity_version", sa.Integer()),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("diff", JSONType, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("correlation_id", sa.String(64), nullable=False),
        sa.Column("note", sa.Text()),
        sa.PrimaryKeyConstraint("tenant_id", *(c.name for c in number), name="pk_event"),
        sqlite_with_rowid=False,
    )
    cols = ", ".join(["tenant_id", *(c.name for c in number), *BODY])
    body = ", ".join(f"e.{c}" for c in BODY)
    op.execute(f"INSERT INTO event_rebuilt ({cols}) SELECT e.tenant_id, {select_number}, {body} "
               f"FROM event e {join}")
    op.drop_table("event")
    op.rename_table("event_rebuilt", "event")
    for name, columns in indexes.items():
        op.create_index(name, "event", columns)
    for action in ("UPDATE", "DELETE"):  # dropped with the old table (revision 0002's guard)
        op.execute(f"CREATE TRIGGER event_no_{action.lower()} BEFORE {action} ON event "
                   f"BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END")


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "event_commit",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("txn", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("base", sa.BigInteger(), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_event_commit_tenant_id_tenant"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "txn", name=op.f("pk_event_commit")),
        sa.UniqueConstraint("tenant_id", "last", name=op.f("uq_event_commit_tenant_id_last")),
        sqlite_with_rowid=False,
    )
    if bind.dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE event_txn AS bigint START 1")
        op.execute("ALTER TABLE event RENAME COLUMN seq TO pos")
        op.execute("ALTER TABLE event ADD COLUMN txn bigint NOT NULL DEFAULT 0")
        op.execute("ALTER TABLE event ALTER COLUMN txn DROP DEFAULT")
        op.execute("ALTER TABLE event DROP CONSTRAINT pk_event")
        op.execute("ALTER TABLE event ADD CONSTRAINT pk_event PRIMARY KEY (tenant_id, txn, pos)")
        for name in OLD_INDEXES:
            op.drop_index(name, "event")
        for name, columns in NEW_INDEXES.items():
            op.create_index(name, "event", columns)
    else:
        _sqlite_rebuild([sa.Column("txn", sa.BigInteger(), nullable=False, autoincrement=False),
                         sa.Column("pos", sa.BigInteger(), nullable=False, autoincrement=False)],
                        "0, e.seq", "", NEW_INDEXES)
    op.execute("INSERT INTO event_commit (tenant_id, txn, base, last) "
               "SELECT id, 0, 0, event_seq FROM tenant WHERE event_seq > 0")
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS bastion_lock_seq()")
        op.execute("DROP FUNCTION IF EXISTS bastion_reserve_seq(bigint)")
        access.apply(bind)


def lost_on_downgrade(bind):
    """Which transaction wrote each event and where in it (every event keeps its number; a new
    upgrade files them all under transaction 0)."""
    n = migrate.count(bind, "SELECT count(*) FROM event WHERE txn <> 0")
    if not n:
        return []
    note = "which transaction wrote each event, and where in it (every event keeps its number)"
    return [("event.txn", n, "values", note), ("event.pos", n, "values", note),
            ("event_commit", migrate.count(bind, "SELECT count(*) FROM event_commit WHERE txn <> 0"),
             "rows", "the transactions of the event log")]


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE event DISABLE TRIGGER USER")  # the append-only guard
        op.execute("UPDATE event e SET pos = c.base + e.pos FROM event_commit c "
                   "WHERE c.tenant_id = e.tenant_id AND c.txn = e.txn AND c.base <> 0")
        op.execute("ALTER TABLE event ENABLE TRIGGER USER")
        for name in NEW_INDEXES:
            op.drop_index(name, "event")
        op.execute("ALTER TABLE event DROP CONSTRAINT pk_event")
        op.execute("ALTER TABLE event DROP COLUMN txn")
        op.execute("ALTER TABLE event RENAME COLUMN pos TO seq")
        op.execute("ALTER TABLE event ADD CONSTRAINT pk_event PRIMARY KEY (tenant_id, seq)")
        for name, columns in OLD_INDEXES.items():
            op.create_index(name, "event", columns)
        for fn in ("bastion_hold_writes()", "bastion_begin_events()", "bastion_commit_events()"):
            op.execute(f"DROP FUNCTION IF EXISTS {fn}")
        op.execute("DROP SEQUENCE event_txn")
    else:
        _sqlite_rebuild([sa.Column("seq", sa.BigInteger(), nullable=False, autoincrement=False)],
                        "c.base + e.pos",
                        "JOIN event_commit c ON c.tenant_id = e.tenant_id AND c.txn = e.txn",
                        OLD_INDEXES)
    op.drop_table("event_commit")
