"""The store's schema migrations (Alembic): 0001 is the schema as first released, every later
change is a migration after it. `provision db upgrade` applies them; a new database is created at
the newest and stamped so."""
