"""Each device's latest online interval moves to `open_intervals`, one row per device
updated in place, so a page's interval upkeep adds and deletes no rows (DESIGN 8: O(page),
not O(stored rows)); `online_intervals` keeps the others and loses its (device_id, end)
index, which only the page-by-page upkeep used.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 16:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    'device_id, start, "end", first_boot_id, first_agent_version, last_boot_id, last_agent_version'
)


def upgrade() -> None:
    op.create_table(
        "open_intervals",
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("first_boot_id", sa.String(length=200), nullable=False),
        sa.Column("first_agent_version", sa.String(length=200), nullable=False),
        sa.Column("last_boot_id", sa.String(length=200), nullable=False),
        sa.Column("last_agent_version", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_open_intervals")),
        postgresql_with={"fillfactor": 50},
    )
    op.execute(
        f"INSERT INTO open_intervals ({COLUMNS}) SELECT {COLUMNS} FROM online_intervals i "
        "WHERE start = (SELECT max(start) FROM online_intervals l "
        "WHERE l.device_id = i.device_id)"
    )
    op.execute(
        "DELETE FROM online_intervals WHERE EXISTS (SELECT 1 FROM open_intervals o "
        "WHERE o.device_id = online_intervals.device_id AND o.start = online_intervals.start)"
    )
    op.drop_index("ix_online_intervals_device_id_end", table_name="online_intervals")


def downgrade() -> None:
    op.create_index("ix_online_intervals_device_id_end", "online_intervals", ["device_id", "end"])
    op.execute(f"INSERT INTO online_intervals ({COLUMNS}) SELECT {COLUMNS} FROM open_intervals")
    op.drop_table("open_intervals")
