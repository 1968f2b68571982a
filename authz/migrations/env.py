"""Alembic environment: runs against the engine handed in by `authz.schema.upgrade`."""

from alembic import context

from authz.models import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
