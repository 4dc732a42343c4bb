"""Each node's power state as last seen through its BMC (by a check, a power action or a rebuild's
network boot), and when: the console's fleet shows it without asking 5,000 BMCs.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("power_state", sa.String(8)))
    op.add_column("nodes", sa.Column("power_seen_at", sa.DateTime))
