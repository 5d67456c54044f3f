"""Tables derived from the registry: the Alembic target and the only table definitions.

Nothing here lists a kind or a field by hand: add a kind in bastion/schema/kinds.py and the
metadata follows (then write the migration).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from bastion.schema.keys import MAX_KEY_BYTES
from bastion.schema.kinds import REGISTRY
from bastion.schema.registry import EntityKind, Field, FieldType
from bastion.schema.roles import ROLES as KEY_ROLES

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both engines (SQLite stores them as UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


JSONType = JSON().with_variant(JSONB(), "postgresql")
KeyType = String(MAX_KEY_BYTES)


def _sql_type(f: Field):
    return {
        FieldType.STR: String(f.max_length) if f.max_length else Text(),
        FieldType.INT: Integer(),
        FieldType.FLOAT: Float(),
        FieldType.BOOL: Boolean(create_constraint=False),
        FieldType.DATETIME: UTCDateTime(),
        FieldType.JSON: JSONType,
        FieldType.KEY: KeyType,
    }[f.type]


def _quoted(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _checks(f: Field) -> list[CheckConstraint]:
    col = f'"{f.name}"'
    checks = []
    if f.domain:
        checks.append(CheckConstraint(f"{col} IN ({_quoted(f.domain)})", name=f"{f.name}_domain"))
    if f.ge is not None or f.le is not None:
        lo = f"{col} >= {f.ge:g}" if f.ge is not None else None
        hi = f"{col} <= {f.le:g}" if f.le is not None else None
        checks.append(CheckConstraint(" AND ".join(x for x in (lo, hi) if x), name=f"{f.name}_range"))
    return checks


tenant = Table(
    "tenant",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *(Column(f.name, _sql_type(f), nullable=not f.required) for f in REGISTRY.entity("tenant").fields),
    Column("created_at", UTCDateTime, nullable=False),
    Column("event_seq", BigInteger, nullable=False, server_default=literal(0)),
    UniqueConstraint("name"),
    CheckConstraint("name = lower(name) AND length(name) > 0", name="name_lower"),
    sqlite_with_rowid=True,
)

node = Table(
    "node",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("id", BigInteger, nullable=False, autoincrement=False),
    Column("key", KeyType, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", LargeBinary(16), nullable=False),
    Column("properties", JSONType),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
    UniqueConstraint("tenant_id", "key"),
    # Target of the kind-checked foreign keys from edge and the typed tables.
    UniqueConstraint("tenant_id", "id", "kind"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    CheckConstraint(f"kind IN ({_quoted(REGISTRY.node_kinds)})", name="kind_domain"),
    CheckConstraint("version >= 1", name="version_positive"),
    sqlite_with_rowid=False,
)


def _typed_table(kind: EntityKind) -> Table:
    cols = [Column(f.name, _sql_type(f), nullable=not (f.required or f.default is not None))
            for f in kind.fields]
    indexes = [Index(None, "tenant_id", f.name) for f in kind.fields if f.indexed]
    checks = [c for f in kind.fields for c in _checks(f)]
    table = Table(
        kind.name,
        metadata,
        Column("tenant_id", Integer, nullable=False),
        Column("node_id", BigInteger, nullable=False, autoincrement=False),
        *cols,
        PrimaryKeyConstraint("tenant_id", "node_id"),
        ForeignKeyConstraint(
            ["tenant_id", "node_id"], ["node.tenant_id", "node.id"], ondelete="CASCADE"
        ),
        *checks,
        *indexes,
        sqlite_with_rowid=False,
    )
    return table


typed: dict[str, Table] = {name: _typed_table(kind) for name, kind in REGISTRY.node_kinds.items()}

_triples = [f"{r}/{s}/{t}" for r, s, t in REGISTRY.triples()]

edge = Table(
    "edge",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("source_id", BigInteger, nullable=False, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("target_id", BigInteger, nullable=False, autoincrement=False),
    Column("source_kind", String(32), nullable=False),
    Column("target_kind", String(32), nullable=False),
    Column("properties", JSONType),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("tenant_id", "source_id", "kind", "target_id"),
    Index(None, "tenant_id", "target_id", "kind", "source_id"),
    ForeignKeyConstraint(
        ["tenant_id", "source_id", "source_kind"], ["node.tenant_id", "node.id", "node.kind"],
        ondelete="CASCADE", name="fk_edge_source_node",
    ),
    ForeignKeyConstraint(
        ["tenant_id", "target_id", "target_kind"], ["node.tenant_id", "node.id", "node.kind"],
        ondelete="CASCADE", name="fk_edge_target_node",
    ),
    CheckConstraint(
        f"kind || '/' || source_kind || '/' || target_kind IN ({_quoted(_triples)})",
        name="allowed_kinds",
    ),
    sqlite_with_rowid=False,
)

event = Table(
    "event",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    # The write transaction that wrote it and its place in it (1, 2, …): its number in the
    # tenant's feed, `seq`, is its transaction's `event_commit.base` + `pos`, given when the
    # transaction commits (docs/design.md, "Event numbers"). 0 is the transaction of events
    # numbered before numbers were given at commit (base 0: pos is their seq).
    Column("txn", BigInteger, nullable=False, autoincrement=False),
    Column("pos", BigInteger, nullable=False, autoincrement=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("entity_key", KeyType, nullable=False),
    Column("entity_kind", String(32), nullable=False),
    Column("entity_version", Integer),
    Column("event_type", String(64), nullable=False),
    Column("diff", JSONType, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("source", String(200), nullable=False),
    Column("correlation_id", String(64), nullable=False),
    Column("note", Text),  # why, when the change needs saying (a risk re-opened by a scan …)
    PrimaryKeyConstraint("tenant_id", "txn", "pos"),
    Index(None, "tenant_id", "entity_key", "txn", "pos"),
    Index(None, "tenant_id", "correlation_id", "txn", "pos"),  # what one run or request changed
    # No foreign key to tenant: it would cost a per-row check on the hottest table, and the
    # tenant's id is fixed by the transaction (and by row-level security on PostgreSQL).
    sqlite_with_rowid=False,
)

# One row per committed write transaction that wrote events: the feed numbers of its events are
# base + 1 … last. Written last in the transaction, under the tenant's event counter, so the
# counter is held for one row however long the transaction ran; numbers are gap-free and in
# commit order.
event_commit = Table(
    "event_commit",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("txn", BigInteger, nullable=False, autoincrement=False),
    Column("base", BigInteger, nullable=False),
    Column("last", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant_id", "txn"),
    UniqueConstraint("tenant_id", "last"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sqlite_with_rowid=False,
)

# Per tenant and per node kind / relationship kind: how many there are (kept by the write path)
# and the largest fan-out seen (refreshed on demand). The graph cost guard prices queries with it.
graph_stats = Table(
    "graph_stats",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("name", String(32), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("max_out", BigInteger),
    Column("max_in", BigInteger),
    Column("refreshed_at", UTCDateTime),
    PrimaryKeyConstraint("tenant_id", "name"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sqlite_with_rowid=False,
)

# One row per `bastion import` run: what was read (files and their SHA-256), when, with which
# options, the counts and the errors. Written in its own transactions, so a failed import is
# recorded too; the events an import writes carry its correlation id.
import_run = Table(
    "import_run",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("id", Integer, nullable=False, autoincrement=False),
    Column("source", String(200), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("correlation_id", String(64), nullable=False),
    Column("options", JSONType, nullable=False),
    Column("files", JSONType, nullable=False),
    Column("counts", JSONType, nullable=False),
    Column("errors", JSONType, nullable=False),
    Column("pid", Integer),  # the process running the import, on `host` (revision 0009)
    Column("host", String(255)),
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    CheckConstraint("status IN ('running', 'succeeded', 'partial', 'failed', 'interrupted')",
                    name="status_domain"),
    sqlite_with_rowid=False,
)

# One row per file an import read whole (not standard input): what makes a later import of the
# same bytes reusable. `members` names the row whose member lists (below) hold what the file
# observed — its own, or an earlier import's it was found identical to; NULL once pruned.
import_file = Table(
    "import_file",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("id", Integer, nullable=False, autoincrement=False),
    Column("run_id", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("format", String(32), nullable=False),
    Column("source", String(200), nullable=False),  # the risks' source, "<tool>[:<--source>]"
    Column("fingerprint", String(64), nullable=False),  # parser code and settings that shaped it
    Column("imported_at", UTCDateTime, nullable=False),
    Column("event_seq", BigInteger, nullable=False),  # the tenant's event counter after it
    Column("members", Integer),
    Column("counts", JSONType, nullable=False),  # records, findings, skipped, nodes, edges
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    Index(None, "tenant_id", "sha256"),
    sqlite_with_rowid=False,
)

# The nodes and edges an imported file observed, kept for the newest member sets only.
import_file_node = Table(
    "import_file_node",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("node_id", BigInteger, nullable=False, autoincrement=False),
    PrimaryKeyConstraint("tenant_id", "file_id", "node_id"),
    ForeignKeyConstraint(["tenant_id", "file_id"], ["import_file.tenant_id", "import_file.id"],
                         ondelete="CASCADE"),
    sqlite_with_rowid=False,
)

import_file_edge = Table(
    "import_file_edge",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("source_id", BigInteger, nullable=False, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("target_id", BigInteger, nullable=False, autoincrement=False),
    PrimaryKeyConstraint("tenant_id", "file_id", "source_id", "kind", "target_id"),
    ForeignKeyConstraint(["tenant_id", "file_id"], ["import_file.tenant_id", "import_file.id"],
                         ondelete="CASCADE"),
    sqlite_with_rowid=False,
)

# Per-tenant settings (risk SLA days, the status new findings start in); changes are events.
setting = Table(
    "setting",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("name", String(100), nullable=False),
    Column("value", JSONType, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("tenant_id", "name"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sqlite_with_rowid=False,
)

# API keys of the server (bastion.store.keys): the token's secret is kept only as its SHA-256; a
# key's name is the actor of the events it writes, unique among a tenant's keys not revoked.

api_key = Table(
    "api_key",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("id", String(16), nullable=False),  # the token's public part
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    CheckConstraint(f"role IN ({_quoted(KEY_ROLES)})", name="role_domain"),
    Index("uq_api_key_live_name", "tenant_id", "name", unique=True,
          sqlite_where=text("revoked_at IS NULL"), postgresql_where=text("revoked_at IS NULL")),
    sqlite_with_rowid=False,
)

# -- change feed (bastion.store.feed, bastion.feed) ---------------------------------------------
# Webhook subscriptions of a tenant: where to POST which events, signed with the secret (kept in
# clear: the relay needs it to sign); `cursor` is the last event sequence handled (delivered, or
# not matching the filter), so delivery resumes there after any restart (at least once).
WEBHOOK_STATES = ("active", "paused")

webhook = Table(
    "webhook",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("id", Integer, nullable=False, autoincrement=False),
    Column("url", String(2000), nullable=False),
    Column("events", String(1000), nullable=False),  # the filter: "risk.*,coverage.*" ("*": all)
    Column("secret", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("cursor", BigInteger, nullable=False),
    Column("failures", Integer, nullable=False),  # consecutive failed attempts
    Column("next_attempt_at", UTCDateTime),  # backoff: not before this instant
    Column("last_error", Text),
    Column("paused_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    CheckConstraint(f"state IN ({_quoted(WEBHOOK_STATES)})", name="state_domain"),
    sqlite_with_rowid=False,
)

# One row per attempt to deliver a batch of events to a subscription (the delivery log).
webhook_delivery = Table(
    "webhook_delivery",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("webhook_id", Integer, nullable=False),
    Column("id", BigInteger, nullable=False, autoincrement=False),
    Column("attempted_at", UTCDateTime, nullable=False),
    Column("seq_from", BigInteger, nullable=False),
    Column("seq_to", BigInteger, nullable=False),
    Column("events", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),  # 1 for the first try of this batch
    Column("status_code", Integer),  # the receiver's answer; NULL when none came
    Column("ok", Boolean, nullable=False),
    Column("error", Text),
    Column("duration_ms", Integer, nullable=False),
    PrimaryKeyConstraint("tenant_id", "webhook_id", "id"),
    ForeignKeyConstraint(["tenant_id", "webhook_id"], ["webhook.tenant_id", "webhook.id"],
                         ondelete="CASCADE"),
    sqlite_with_rowid=False,
)

# Where the relay stands per tenant and sink (e.g. "nats"): the last event sequence the sink
# acknowledged; a restarted relay resumes after it.
relay_cursor = Table(
    "relay_cursor",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("sink", String(200), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("tenant_id", "sink"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sqlite_with_rowid=False,
)

# -- detection coverage -------------------------------------------------------------------------
# The ATT&CK catalog is reference data shared by every tenant (no tenant_id): releases per domain
# and version side by side, exactly one active per domain; their objects (tactics, techniques,
# groups, detection strategies, analytics, data components …) and relations by STIX id.
ATTACK_DOMAINS = ("enterprise", "ics", "mobile")

attack_release = Table(
    "attack_release",
    metadata,
    Column("domain", String(20), nullable=False),
    Column("version", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("released", String(30)),  # the release's date as the data gives it
    Column("source", String(500), nullable=False),  # file path, package or URL it came from
    Column("sha256", String(64)),
    Column("spec_version", String(10)),  # STIX 2.0 or 2.1
    Column("imported_at", UTCDateTime, nullable=False),
    Column("active", Boolean(create_constraint=False), nullable=False),
    Column("counts", JSONType, nullable=False),  # objects per type
    PrimaryKeyConstraint("domain", "version"),
    CheckConstraint(f"domain IN ({_quoted(ATTACK_DOMAINS)})", name="domain_domain"),
    # Exactly one active version per domain (a partial unique index on both engines).
    Index("uq_attack_release_active", "domain", unique=True,
          sqlite_where=text("active"), postgresql_where=text("active")),
    sqlite_with_rowid=False,
)

attack_object = Table(
    "attack_object",
    metadata,
    Column("domain", String(20), nullable=False),
    Column("version", String(20), nullable=False),
    Column("stix_id", String(100), nullable=False),
    Column("type", String(40), nullable=False),  # STIX type: attack-pattern, x-mitre-tactic …
    Column("attack_id", String(30)),  # T1078.004, TA0001, G0016, DET0001 …
    Column("name", String(300), nullable=False),
    Column("parent", String(30)),  # a sub-technique's parent technique id
    Column("tactics", JSONType),  # a technique's tactic short names, in kill-chain order
    Column("platforms", JSONType),
    Column("shortname", String(100)),  # a tactic's short name (initial-access …)
    Column("ordinal", Integer),  # a tactic's position in its matrix
    Column("deprecated", Boolean(create_constraint=False), nullable=False),
    Column("revoked", Boolean(create_constraint=False), nullable=False),
    Column("extra", JSONType),  # type-specific details (log sources, data components …)
    PrimaryKeyConstraint("domain", "version", "stix_id"),
    ForeignKeyConstraint(["domain", "version"], ["attack_release.domain", "attack_release.version"],
                         ondelete="CASCADE"),
    Index(None, "domain", "version", "attack_id"),
    Index(None, "domain", "version", "type"),
    sqlite_with_rowid=False,
)

attack_relation = Table(
    "attack_relation",
    metadata,
    Column("domain", String(20), nullable=False),
    Column("version", String(20), nullable=False),
    Column("source", String(100), nullable=False),  # STIX ids
    Column("kind", String(40), nullable=False),  # uses, subtechnique-of, revoked-by, detects …
    Column("target", String(100), nullable=False),
    PrimaryKeyConstraint("domain", "version", "source", "kind", "target"),
    ForeignKeyConstraint(["domain", "version"], ["attack_release.domain", "attack_release.version"],
                         ondelete="CASCADE"),
    Index(None, "domain", "version", "target", "kind"),
    sqlite_with_rowid=False,
)

# Per tenant: what an account's detection inventory was at each import (for drift), and the
# coverage computed then (for history), each tagged with the ATT&CK version it was measured on.
detection_snapshot = Table(
    "detection_snapshot",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("id", Integer, nullable=False, autoincrement=False),
    Column("account", KeyType, nullable=False),
    Column("taken_at", UTCDateTime, nullable=False),
    Column("source", String(500), nullable=False),
    Column("detections", JSONType, nullable=False),  # detection key → [content hash, status, health]
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    Index(None, "tenant_id", "account", "id"),
    sqlite_with_rowid=False,
)

coverage_snapshot = Table(
    "coverage_snapshot",
    metadata,
    Column("tenant_id", Integer, nullable=False),
    Column("id", Integer, nullable=False, autoincrement=False),
    Column("account", KeyType, nullable=False),  # an account key, or "*" for the whole tenant
    Column("taken_at", UTCDateTime, nullable=False),
    Column("method", String(20), nullable=False),
    Column("attack_domain", String(20), nullable=False),
    Column("attack_version", String(20), nullable=False),
    Column("detection_snapshot", Integer),
    Column("overall", JSONType, nullable=False),  # {covered, total, percent}
    Column("tactics", JSONType, nullable=False),  # tactic id → {covered, total, percent}
    Column("techniques", JSONType, nullable=False),  # technique id → score
    PrimaryKeyConstraint("tenant_id", "id"),
    ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    Index(None, "tenant_id", "account", "id"),
    sqlite_with_rowid=False,
)

# Tables whose rows belong to one tenant: row-level security and the query layer's filter.
TENANT_TABLES: tuple[Table, ...] = (node, edge, event, event_commit, graph_stats, import_run, import_file,
                                     import_file_node, import_file_edge, setting,
                                     detection_snapshot, coverage_snapshot, api_key, webhook,
                                     webhook_delivery, relay_cursor, *typed.values())
