"""Alembic's entry point for provision's migrations. provision runs them itself (store/schema.py,
`provision db upgrade`) on a connection it opened, passed in config.attributes["connection"]."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
