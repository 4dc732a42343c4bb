"""Creating the schema, and bringing a database made by an older provision up to it: tables by
`create_all`, the columns added since the first release by ALTER (create_all adds tables, not
columns)."""

from __future__ import annotations

from sqlalchemy import Engine, MetaData, inspect, text

_ADDED = {
    "nodes": [("generation", "INTEGER NOT NULL DEFAULT 0"), ("rebuild_started_at", "TIMESTAMP"),
              ("last_rebuild_seconds", "FLOAT")],
    "rebuilds": [("runner", "VARCHAR(16) NOT NULL DEFAULT 'cli'"), ("owner", "VARCHAR(128)"),
                 ("lease_until", "TIMESTAMP"), ("control", "VARCHAR(16) NOT NULL DEFAULT 'run'"),
                 ("finished_at", "TIMESTAMP"), ("summary", "JSON")],
}


def ensure_schema(engine: Engine, metadata: MetaData) -> None:
    metadata.create_all(engine)
    for table, added in _ADDED.items():
        cols = {c["name"] for c in inspect(engine).get_columns(table)}
        missing = [(c, t) for c, t in added if c not in cols]
        if missing:
            with engine.begin() as conn:
                for col, typ in missing:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {col} {typ}"))
                if table == "nodes":
                    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_nodes_generation ON nodes (generation)"))
