"""detection coverage: the ATT&CK catalog, cloud accounts, detections, mappings, gaps, snapshots

Revision ID: 0005
Revises: 0004

The catalog tables are shared reference data (no tenant): the application role may read them.
Four entity kinds join the graph (cloud_account, detection, mapping, gap) with three
relationship kinds, so the node kind and edge triple CHECK constraints widen: on PostgreSQL by
replacing the constraints, on SQLite by rewriting the constraint text in the schema
(writable_schema, as SQLite documents for a change that no stored row can violate) instead of
copying the node and edge tables.
Create Date: 2026-12-01 13:32:17.157262
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


APP_ROLE = "bastion_app"
CURRENT_TENANT = "NULLIF(current_setting('bastion.tenant_id', true), '')::integer"
NEW_KINDS = ("cloud_account", "detection", "mapping", "gap")
TENANT_TABLES = (*NEW_KINDS, "detection_snapshot", "coverage_snapshot")
CATALOG = ("attack_release", "attack_object", "attack_relation")
OLD_NODE_KINDS = ("asset", "port", "technology", "attribute", "risk", "seed", "capability", "job",
                  "integration")
NEW_RELATIONSHIPS = ("HAS_DETECTION", "MAPS_TO", "HAS_GAP")
NEW_TRIPLES = ("HAS_DETECTION/cloud_account/detection", "HAS_GAP/cloud_account/gap",
               "MAPS_TO/detection/mapping")


def _quoted(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _old_triples(bind) -> list[str]:
    """The edge triples the stored CHECK allows now (as revision 0001 wrote them)."""
    import re

    if bind.dialect.name == "postgresql":
        sql = bind.exec_driver_sql(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'ck_edge_allowed_kinds'"
        ).scalar_one()
    else:
        sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'edge'").scalar_one()
    return re.findall(r"'([A-Z_]+/[a-z_]+/[a-z_]+)'", sql)


def _node_check(kinds) -> str:
    return f"kind IN ({_quoted(kinds)})"


def _edge_check(triples) -> str:
    return f"kind || '/' || source_kind || '/' || target_kind IN ({_quoted(sorted(triples))})"


def _replace_checks(node_from: str, node_to: str, edge_from: str, edge_to: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE node DROP CONSTRAINT ck_node_kind_domain")
        op.execute(f"ALTER TABLE node ADD CONSTRAINT ck_node_kind_domain CHECK ({node_to})")
        op.execute("ALTER TABLE edge DROP CONSTRAINT ck_edge_allowed_kinds")
        op.execute(f"ALTER TABLE edge ADD CONSTRAINT ck_edge_allowed_kinds CHECK ({edge_to})")
        return
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    for table, old, new in (("node", node_from, node_to), ("edge", edge_from, edge_to)):
        sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                   (table,)).scalar_one()
        assert sql.count(old) == 1, f"the CHECK constraint of {table} is not the expected one"
        bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                             (sql.replace(old, new), table))
    bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    op.create_table('attack_release',
    sa.Column('domain', sa.String(length=20), nullable=False),
    sa.Column('version', sa.String(length=20), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('released', sa.String(length=30), nullable=True),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('spec_version', sa.String(length=10), nullable=True),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('counts', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.CheckConstraint("domain IN ('enterprise', 'ics', 'mobile')", name=op.f('ck_attack_release_domain_domain')),
    sa.PrimaryKeyConstraint('domain', 'version', name=op.f('pk_attack_release')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('attack_release', schema=None) as batch_op:
        batch_op.create_index('uq_attack_release_active', ['domain'], unique=True, sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))

    op.create_table('attack_object',
    sa.Column('domain', sa.String(length=20), nullable=False),
    sa.Column('version', sa.String(length=20), nullable=False),
    sa.Column('stix_id', sa.String(length=100), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('attack_id', sa.String(length=30), nullable=True),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('parent', sa.String(length=30), nullable=True),
    sa.Column('tactics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('platforms', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('shortname', sa.String(length=100), nullable=True),
    sa.Column('ordinal', sa.Integer(), nullable=True),
    sa.Column('deprecated', sa.Boolean(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('extra', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['domain', 'version'], ['attack_release.domain', 'attack_release.version'], name=op.f('fk_attack_object_domain_version_attack_release'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('domain', 'version', 'stix_id', name=op.f('pk_attack_object')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('attack_object', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attack_object_domain_version_attack_id'), ['domain', 'version', 'attack_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_attack_object_domain_version_type'), ['domain', 'version', 'type'], unique=False)

    op.create_table('attack_relation',
    sa.Column('domain', sa.String(length=20), nullable=False),
    sa.Column('version', sa.String(length=20), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('target', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['domain', 'version'], ['attack_release.domain', 'attack_release.version'], name=op.f('fk_attack_relation_domain_version_attack_release'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('domain', 'version', 'source', 'kind', 'target', name=op.f('pk_attack_relation')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('attack_relation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attack_relation_domain_version_target_kind'), ['domain', 'version', 'target', 'kind'], unique=False)

    op.create_table('coverage_snapshot',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('account', sa.String(length=2048), nullable=False),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=False),
    sa.Column('attack_domain', sa.String(length=20), nullable=False),
    sa.Column('attack_version', sa.String(length=20), nullable=False),
    sa.Column('detection_snapshot', sa.Integer(), nullable=True),
    sa.Column('overall', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('tactics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('techniques', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_coverage_snapshot_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_coverage_snapshot')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('coverage_snapshot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coverage_snapshot_tenant_id_account_id'), ['tenant_id', 'account', 'id'], unique=False)

    op.create_table('detection_snapshot',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('account', sa.String(length=2048), nullable=False),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('detections', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_detection_snapshot_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_detection_snapshot')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('detection_snapshot', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_detection_snapshot_tenant_id_account_id'), ['tenant_id', 'account', 'id'], unique=False)

    op.create_table('cloud_account',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('provider', sa.Text(), nullable=False),
    sa.Column('identifier', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('environment', sa.Text(), nullable=True),
    sa.Column('criticality', sa.Text(), nullable=False),
    sa.Column('regions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('platforms', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.CheckConstraint('"criticality" IN (\'low\', \'medium\', \'high\', \'critical\')', name=op.f('ck_cloud_account_criticality_domain')),
    sa.CheckConstraint('"environment" IN (\'prod\', \'staging\', \'dev\')', name=op.f('ck_cloud_account_environment_domain')),
    sa.CheckConstraint('"provider" IN (\'aws\', \'azure\', \'gcp\', \'m365\', \'okta\', \'github\', \'kubernetes\', \'other\')', name=op.f('ck_cloud_account_provider_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_cloud_account_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_cloud_account')),
    sqlite_with_rowid=False
    )
    op.create_table('detection',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('account', sa.String(length=2048), nullable=False),
    sa.Column('rule_id', sa.String(length=300), nullable=False),
    sa.Column('name', sa.String(length=500), nullable=True),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('service', sa.String(length=100), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=True),
    sa.Column('level', sa.Text(), nullable=True),
    sa.Column('rule_tags', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('logsource', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('raw', sa.Text(), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('source_path', sa.String(length=1000), nullable=True),
    sa.Column('health', sa.Text(), nullable=False),
    sa.Column('last_validated', sa.DateTime(timezone=True), nullable=True),
    sa.Column('health_issues', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.CheckConstraint('"health" IN (\'healthy\', \'degraded\', \'broken\', \'unknown\')', name=op.f('ck_detection_health_domain')),
    sa.CheckConstraint('"level" IN (\'informational\', \'low\', \'medium\', \'high\', \'critical\')', name=op.f('ck_detection_level_domain')),
    sa.CheckConstraint('"revision" >= 1', name=op.f('ck_detection_revision_range')),
    sa.CheckConstraint('"status" IN (\'enabled\', \'disabled\', \'deprecated\')', name=op.f('ck_detection_status_domain')),
    sa.CheckConstraint('"type" IN (\'sigma_rule\', \'cloud_control\', \'log_query\', \'event_pattern\', \'metric_alarm\', \'other\')', name=op.f('ck_detection_type_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_detection_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_detection')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('detection', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_detection_tenant_id_health'), ['tenant_id', 'health'], unique=False)
        batch_op.create_index(batch_op.f('ix_detection_tenant_id_service'), ['tenant_id', 'service'], unique=False)
        batch_op.create_index(batch_op.f('ix_detection_tenant_id_status'), ['tenant_id', 'status'], unique=False)

    op.create_table('gap',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('account', sa.String(length=2048), nullable=False),
    sa.Column('technique', sa.String(length=20), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('comment', sa.String(length=4000), nullable=True),
    sa.CheckConstraint('"status" IN (\'open\', \'acknowledged\', \'remediated\', \'accepted_risk\')', name=op.f('ck_gap_status_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_gap_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_gap')),
    sqlite_with_rowid=False
    )
    op.create_table('mapping',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('detection', sa.String(length=2048), nullable=False),
    sa.Column('technique', sa.String(length=20), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('mapped_by', sa.String(length=200), nullable=True),
    sa.Column('rationale', sa.String(length=2000), nullable=True),
    sa.Column('validation', sa.Text(), nullable=False),
    sa.Column('attack_version', sa.String(length=20), nullable=True),
    sa.CheckConstraint('"confidence" >= 0 AND "confidence" <= 1', name=op.f('ck_mapping_confidence_range')),
    sa.CheckConstraint('"method" IN (\'tag\', \'vendor\', \'pattern\', \'analyst\', \'derived\')', name=op.f('ck_mapping_method_domain')),
    sa.CheckConstraint('"validation" IN (\'pending\', \'validated\', \'disputed\')', name=op.f('ck_mapping_validation_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_mapping_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_mapping')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('mapping', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mapping_tenant_id_technique'), ['tenant_id', 'technique'], unique=False)
    old_triples = _old_triples(op.get_bind())
    _replace_checks(_node_check(OLD_NODE_KINDS), _node_check((*OLD_NODE_KINDS, *NEW_KINDS)),
                    _edge_check(old_triples), _edge_check((*old_triples, *NEW_TRIPLES)))
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"CREATE POLICY tenant_isolation ON {table} TO {APP_ROLE} "
                       f"USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})")
            op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")
        for table in CATALOG:  # shared reference data: read by every tenant, written by the owner
            op.execute(f"GRANT SELECT ON {table} TO {APP_ROLE}")


def lost_on_downgrade(bind):
    from bastion.store import migrate

    return [*((kind, migrate.count(bind, f"SELECT count(*) FROM node WHERE kind = '{kind}'"), "rows",
               f"a {kind}.deleted event each") for kind in NEW_KINDS),
            ("edge", migrate.count(bind, f"SELECT count(*) FROM edge WHERE source_kind IN "
                                         f"({_quoted(NEW_KINDS)}) OR target_kind IN ({_quoted(NEW_KINDS)})"),
             "rows", "an edge.removed event each"),
            ("graph_stats", migrate.count(bind, "SELECT count(*) FROM graph_stats WHERE name IN "
                                                f"({_quoted((*NEW_KINDS, *NEW_RELATIONSHIPS))})"), "rows"),
            *migrate.rows_of(bind, ("detection_snapshot", "coverage_snapshot")),
            *migrate.rows_of(bind, CATALOG, "shared ATT&CK catalog: `bastion init` loads it again")]


def downgrade() -> None:
    from bastion.store import migrate

    bind = op.get_bind()
    # Nodes of the kinds going away (and, by cascade, their typed rows and edges) go first,
    # through events as the write path deletes.
    migrate.delete_nodes(bind, NEW_KINDS, "schema downgraded below 0005: the kind no longer exists")
    op.execute(f"DELETE FROM graph_stats WHERE name IN ({_quoted((*NEW_KINDS, *NEW_RELATIONSHIPS))})")
    old_triples = [t for t in _old_triples(bind) if t not in NEW_TRIPLES]
    _replace_checks(_node_check((*OLD_NODE_KINDS, *NEW_KINDS)), _node_check(OLD_NODE_KINDS),
                    _edge_check((*old_triples, *NEW_TRIPLES)), _edge_check(old_triples))
    if bind.dialect.name == "postgresql":
        for table in (*TENANT_TABLES, *CATALOG):
            op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
    with op.batch_alter_table("mapping", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mapping_tenant_id_technique'))

    op.drop_table('mapping')
    op.drop_table('gap')
    with op.batch_alter_table('detection', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_detection_tenant_id_status'))
        batch_op.drop_index(batch_op.f('ix_detection_tenant_id_service'))
        batch_op.drop_index(batch_op.f('ix_detection_tenant_id_health'))

    op.drop_table('detection')
    op.drop_table('cloud_account')
    with op.batch_alter_table('detection_snapshot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_detection_snapshot_tenant_id_account_id'))

    op.drop_table('detection_snapshot')
    with op.batch_alter_table('coverage_snapshot', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coverage_snapshot_tenant_id_account_id'))

    op.drop_table('coverage_snapshot')
    with op.batch_alter_table('attack_relation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attack_relation_domain_version_target_kind'))

    op.drop_table('attack_relation')
    with op.batch_alter_table('attack_object', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attack_object_domain_version_type'))
        batch_op.drop_index(batch_op.f('ix_attack_object_domain_version_attack_id'))

    op.drop_table('attack_object')
    with op.batch_alter_table('attack_release', schema=None) as batch_op:
        batch_op.drop_index('uq_attack_release_active', sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))

    op.drop_table('attack_release')
