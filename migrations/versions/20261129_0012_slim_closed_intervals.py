"""A closed interval's `last_boot_id` and `last_agent_version` are NULL when equal to its
first ones (most intervals see no restart or upgrade): ~29 B less a row, which takes a
season's ~45M rows under 150 B each, index included (DESIGN 8). Readers coalesce.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 19:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LAST = ("last_boot_id", "last_agent_version")


def upgrade() -> None:
    with op.batch_alter_table("online_intervals") as batch:
        for last in LAST:
            batch.alter_column(last, existing_type=sa.String(length=200), nullable=True)
    op.execute(
        "UPDATE online_intervals SET "
        "last_boot_id = CASE WHEN last_boot_id = first_boot_id THEN NULL ELSE last_boot_id END, "
        "last_agent_version = CASE WHEN last_agent_version = first_agent_version "
        "THEN NULL ELSE last_agent_version END"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE online_intervals SET last_boot_id = coalesce(last_boot_id, first_boot_id), "
        "last_agent_version = coalesce(last_agent_version, first_agent_version)"
    )
    with op.batch_alter_table("online_intervals") as batch:
        for last in LAST:
            batch.alter_column(last, existing_type=sa.String(length=200), nullable=False)
