"""What provision added before it had migrations (by create_all and hand-written ALTERs, in the
releases up to 2026-12-03): per-node generations, rebuild runs in the service under a lease,
imported media, console sessions. A database made by any of those releases has some of them
already: each is added only when missing.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS: dict[str, list[sa.Column]] = {
    "nodes": [sa.Column("generation", sa.Integer, nullable=False, server_default="0")],
    "rebuilds": [sa.Column("runner", sa.String(16), nullable=False, server_default="cli"),
                 sa.Column("owner", sa.String(128)),
                 sa.Column("lease_until", sa.DateTime),
                 sa.Column("control", sa.String(16), nullable=False, server_default="run"),
                 sa.Column("finished_at", sa.DateTime),
                 sa.Column("summary", sa.JSON)],
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, columns in _COLUMNS.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        for column in columns:
            if column.name not in have:
                op.add_column(table, column)
    if "ix_nodes_generation" not in {i["name"] for i in inspector.get_indexes("nodes")}:
        op.create_index("ix_nodes_generation", "nodes", ["generation"])
    tables = set(inspector.get_table_names())
    if "media" not in tables:
        op.create_table(
            "media",
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("liveimg", sa.String(255)),
            sa.Column("files", sa.JSON, nullable=False),
            sa.Column("size", sa.Integer, nullable=False),
            sa.Column("source", sa.String(255), nullable=False),
            sa.Column("imported_at", sa.DateTime, nullable=False),
        )
    if "ui_sessions" not in tables:
        op.create_table(
            "ui_sessions",
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("digest", sa.String(64), nullable=False, unique=True),
            sa.Column("created_at", sa.DateTime, nullable=False),
            sa.Column("expires_at", sa.DateTime, nullable=False),
            sa.Column("ended_at", sa.DateTime),
        )
