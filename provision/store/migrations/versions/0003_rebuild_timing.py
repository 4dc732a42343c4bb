"""Each node's rebuild timing: when its current rebuild started and how long its last completed
one took (a batch starts the longest first).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("rebuild_started_at", sa.DateTime))
    op.add_column("nodes", sa.Column("last_rebuild_seconds", sa.Float))
