"""node, edge, event and one table per entity kind

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 07:24:20.227201
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tenant',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('event_seq', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.CheckConstraint('name = lower(name) AND length(name) > 0', name=op.f('ck_tenant_name_lower')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenant')),
    sa.UniqueConstraint('name', name=op.f('uq_tenant_name')),
    sqlite_with_rowid=True
    )
    op.create_table('event',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('entity_key', sa.String(length=2048), nullable=False),
    sa.Column('entity_kind', sa.String(length=32), nullable=False),
    sa.Column('entity_version', sa.Integer(), nullable=True),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('diff', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('correlation_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('tenant_id', 'seq', name=op.f('pk_event')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_tenant_id_entity_key_seq'), ['tenant_id', 'entity_key', 'seq'], unique=False)

    op.create_table('node',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('key', sa.String(length=2048), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.LargeBinary(length=16), nullable=False),
    sa.Column('properties', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('asset', 'port', 'technology', 'attribute', 'risk', 'seed', 'capability', 'job', 'integration')", name=op.f('ck_node_kind_domain')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_node_version_positive')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenant.id'], name=op.f('fk_node_tenant_id_tenant'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'id', name=op.f('pk_node')),
    sa.UniqueConstraint('tenant_id', 'id', 'kind', name=op.f('uq_node_tenant_id_id_kind')),
    sa.UniqueConstraint('tenant_id', 'key', name=op.f('uq_node_tenant_id_key')),
    sqlite_with_rowid=False
    )
    op.create_table('asset',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('identifier', sa.String(length=2000), nullable=False),
    sa.Column('class', sa.Text(), nullable=False),
    sa.Column('group', sa.String(length=300), nullable=False),
    sa.Column('name', sa.String(length=2000), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('exposure', sa.Text(), nullable=False),
    sa.Column('criticality', sa.Text(), nullable=True),
    sa.Column('provider', sa.Text(), nullable=True),
    sa.Column('account', sa.String(length=200), nullable=True),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.CheckConstraint('"class" IN (\'domain\', \'subdomain\', \'ipv4\', \'ipv6\', \'cidr\', \'url\', \'cloud_resource\', \'repository\')', name=op.f('ck_asset_class_domain')),
    sa.CheckConstraint('"criticality" IN (\'low\', \'medium\', \'high\', \'critical\')', name=op.f('ck_asset_criticality_domain')),
    sa.CheckConstraint('"exposure" IN (\'external\', \'internal\', \'unknown\')', name=op.f('ck_asset_exposure_domain')),
    sa.CheckConstraint('"provider" IN (\'aws\', \'azure\', \'gcp\', \'m365\', \'okta\', \'github\', \'kubernetes\', \'other\')', name=op.f('ck_asset_provider_domain')),
    sa.CheckConstraint('"status" IN (\'active\', \'inactive\', \'frozen\')', name=op.f('ck_asset_status_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_asset_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_asset')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('asset', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_asset_tenant_id_class'), ['tenant_id', 'class'], unique=False)
        batch_op.create_index(batch_op.f('ix_asset_tenant_id_group'), ['tenant_id', 'group'], unique=False)
        batch_op.create_index(batch_op.f('ix_asset_tenant_id_status'), ['tenant_id', 'status'], unique=False)

    op.create_table('attribute',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('value', sa.String(length=1000), nullable=False),
    sa.Column('parent', sa.String(length=2048), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_attribute_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_attribute')),
    sqlite_with_rowid=False
    )
    op.create_table('capability',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('version', sa.String(length=50), nullable=True),
    sa.Column('category', sa.Text(), nullable=False),
    sa.CheckConstraint('"category" IN (\'discovery\', \'scanner\', \'enrichment\', \'import\', \'manual\')', name=op.f('ck_capability_category_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_capability_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_capability')),
    sqlite_with_rowid=False
    )
    op.create_table('edge',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('target_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('source_kind', sa.String(length=32), nullable=False),
    sa.Column('target_kind', sa.String(length=32), nullable=False),
    sa.Column('properties', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind || '/' || source_kind || '/' || target_kind IN ('ACCESSIBLE_BY/asset/asset', 'ACCESSIBLE_BY/asset/integration', 'ACCESSIBLE_BY/port/asset', 'ACCESSIBLE_BY/port/integration', 'CONNECTS_TO/asset/asset', 'CONNECTS_TO/asset/port', 'CONNECTS_TO/port/asset', 'CONNECTS_TO/port/port', 'DEPENDS_ON/asset/asset', 'DEPENDS_ON/asset/technology', 'DISCOVERED/asset/asset', 'DISCOVERED/asset/attribute', 'DISCOVERED/asset/port', 'DISCOVERED/asset/risk', 'DISCOVERED/asset/seed', 'DISCOVERED/asset/technology', 'DISCOVERED/capability/asset', 'DISCOVERED/capability/attribute', 'DISCOVERED/capability/port', 'DISCOVERED/capability/risk', 'DISCOVERED/capability/seed', 'DISCOVERED/capability/technology', 'DISCOVERED/integration/asset', 'DISCOVERED/integration/attribute', 'DISCOVERED/integration/port', 'DISCOVERED/integration/risk', 'DISCOVERED/integration/seed', 'DISCOVERED/integration/technology', 'DISCOVERED/job/asset', 'DISCOVERED/job/attribute', 'DISCOVERED/job/port', 'DISCOVERED/job/risk', 'DISCOVERED/job/seed', 'DISCOVERED/job/technology', 'DISCOVERED/port/asset', 'DISCOVERED/port/attribute', 'DISCOVERED/port/port', 'DISCOVERED/port/risk', 'DISCOVERED/port/seed', 'DISCOVERED/port/technology', 'DISCOVERED/seed/asset', 'DISCOVERED/seed/attribute', 'DISCOVERED/seed/port', 'DISCOVERED/seed/risk', 'DISCOVERED/seed/seed', 'DISCOVERED/seed/technology', 'HAS_ATTRIBUTE/asset/attribute', 'HAS_ATTRIBUTE/capability/attribute', 'HAS_ATTRIBUTE/integration/attribute', 'HAS_ATTRIBUTE/job/attribute', 'HAS_ATTRIBUTE/port/attribute', 'HAS_ATTRIBUTE/risk/attribute', 'HAS_ATTRIBUTE/seed/attribute', 'HAS_ATTRIBUTE/technology/attribute', 'HAS_PORT/asset/port', 'HAS_TECHNOLOGY/asset/technology', 'HAS_TECHNOLOGY/port/technology', 'HAS_VULNERABILITY/asset/risk', 'HAS_VULNERABILITY/port/risk', 'HAS_VULNERABILITY/technology/risk', 'INTEGRATES_WITH/integration/asset', 'INTEGRATES_WITH/integration/capability', 'INTEGRATES_WITH/integration/seed', 'RESOLVES_TO/asset/asset', 'SCANNED_BY/asset/capability', 'SCANNED_BY/asset/job', 'SCANNED_BY/port/capability', 'SCANNED_BY/port/job', 'SCANNED_BY/seed/capability', 'SCANNED_BY/seed/job', 'SUBDOMAIN_OF/asset/asset')", name=op.f('ck_edge_allowed_kinds')),
    sa.ForeignKeyConstraint(['tenant_id', 'source_id', 'source_kind'], ['node.tenant_id', 'node.id', 'node.kind'], name='fk_edge_source_node', ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id', 'target_id', 'target_kind'], ['node.tenant_id', 'node.id', 'node.kind'], name='fk_edge_target_node', ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'source_id', 'kind', 'target_id', name=op.f('pk_edge')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('edge', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_edge_tenant_id_target_id_kind_source_id'), ['tenant_id', 'target_id', 'kind', 'source_id'], unique=False)

    op.create_table('integration',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('type', sa.String(length=50), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('endpoint', sa.String(length=500), nullable=True),
    sa.Column('credential_ref', sa.String(length=500), nullable=True),
    sa.CheckConstraint('"status" IN (\'enabled\', \'disabled\', \'failing\')', name=op.f('ck_integration_status_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_integration_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_integration')),
    sqlite_with_rowid=False
    )
    op.create_table('job',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('target', sa.String(length=2048), nullable=False),
    sa.Column('capability', sa.String(length=100), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('"status" IN (\'queued\', \'running\', \'passed\', \'failed\')', name=op.f('ck_job_status_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_job_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_job')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_tenant_id_status'), ['tenant_id', 'status'], unique=False)

    op.create_table('port',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('asset', sa.String(length=2048), nullable=False),
    sa.Column('protocol', sa.Text(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('service', sa.String(length=100), nullable=True),
    sa.CheckConstraint('"number" >= 0 AND "number" <= 65535', name=op.f('ck_port_number_range')),
    sa.CheckConstraint('"protocol" IN (\'tcp\', \'udp\', \'sctp\')', name=op.f('ck_port_protocol_domain')),
    sa.CheckConstraint('"state" IN (\'open\', \'closed\', \'filtered\')', name=op.f('ck_port_state_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_port_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_port')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('port', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_port_tenant_id_state'), ['tenant_id', 'state'], unique=False)

    op.create_table('risk',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('target', sa.String(length=2048), nullable=False),
    sa.Column('group', sa.String(length=300), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('title', sa.String(length=1000), nullable=True),
    sa.Column('cve', sa.String(length=30), nullable=True),
    sa.Column('severity', sa.Text(), nullable=False),
    sa.Column('cvss', sa.Float(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('comment', sa.String(length=4000), nullable=True),
    sa.CheckConstraint('"cvss" >= 0 AND "cvss" <= 10', name=op.f('ck_risk_cvss_range')),
    sa.CheckConstraint('"reason" IN (\'false_positive\', \'out_of_scope\', \'duplicate\', \'not_observed\', \'other\')', name=op.f('ck_risk_reason_domain')),
    sa.CheckConstraint('"severity" IN (\'info\', \'low\', \'medium\', \'high\', \'critical\')', name=op.f('ck_risk_severity_domain')),
    sa.CheckConstraint('"status" IN (\'triage\', \'open\', \'accepted\', \'remediated\', \'deleted\')', name=op.f('ck_risk_status_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_risk_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_risk')),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('risk', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_tenant_id_cve'), ['tenant_id', 'cve'], unique=False)
        batch_op.create_index(batch_op.f('ix_risk_tenant_id_group'), ['tenant_id', 'group'], unique=False)
        batch_op.create_index(batch_op.f('ix_risk_tenant_id_severity'), ['tenant_id', 'severity'], unique=False)
        batch_op.create_index(batch_op.f('ix_risk_tenant_id_status'), ['tenant_id', 'status'], unique=False)

    op.create_table('seed',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('class', sa.Text(), nullable=False),
    sa.Column('identifier', sa.String(length=300), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('provider', sa.Text(), nullable=True),
    sa.CheckConstraint('"class" IN (\'domain\', \'cidr\', \'ip\', \'cloud_account\')', name=op.f('ck_seed_class_domain')),
    sa.CheckConstraint('"provider" IN (\'aws\', \'azure\', \'gcp\', \'m365\', \'okta\', \'github\', \'kubernetes\', \'other\')', name=op.f('ck_seed_provider_domain')),
    sa.CheckConstraint('"status" IN (\'active\', \'paused\', \'removed\')', name=op.f('ck_seed_status_domain')),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_seed_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_seed')),
    sqlite_with_rowid=False
    )
    op.create_table('technology',
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('cpe', sa.String(length=500), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('version', sa.String(length=100), nullable=True),
    sa.Column('vendor', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id', 'node_id'], ['node.tenant_id', 'node.id'], name=op.f('fk_technology_tenant_id_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id', 'node_id', name=op.f('pk_technology')),
    sqlite_with_rowid=False
    )


def lost_on_downgrade(bind):
    """Every table goes: all of their rows are lost."""
    from bastion.store import migrate

    return migrate.rows_of(bind, ("tenant", "node", "edge", "event", "asset", "port", "technology",
                                  "attribute", "risk", "seed", "capability", "job", "integration"))


def downgrade() -> None:
    op.drop_table('technology')
    op.drop_table('seed')
    with op.batch_alter_table('risk', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_risk_tenant_id_status'))
        batch_op.drop_index(batch_op.f('ix_risk_tenant_id_severity'))
        batch_op.drop_index(batch_op.f('ix_risk_tenant_id_group'))
        batch_op.drop_index(batch_op.f('ix_risk_tenant_id_cve'))

    op.drop_table('risk')
    with op.batch_alter_table('port', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_port_tenant_id_state'))

    op.drop_table('port')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_tenant_id_status'))

    op.drop_table('job')
    op.drop_table('integration')
    with op.batch_alter_table('edge', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_edge_tenant_id_target_id_kind_source_id'))

    op.drop_table('edge')
    op.drop_table('capability')
    op.drop_table('attribute')
    with op.batch_alter_table('asset', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_asset_tenant_id_status'))
        batch_op.drop_index(batch_op.f('ix_asset_tenant_id_group'))
        batch_op.drop_index(batch_op.f('ix_asset_tenant_id_class'))

    op.drop_table('asset')
    op.drop_table('node')
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_tenant_id_entity_key_seq'))

    op.drop_table('event')
    op.drop_table('tenant')
