"""Alembic environment: the target is the registry-derived metadata."""

from alembic import context

from bastion.store.tables import UTCDateTime, metadata


def render_item(type_, obj, autogen_context):
    # Frozen revisions must not import application types: UTCDateTime is stored as this.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by table copy
    render_item=render_item,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
