"""Device metadata reverts: who reverted a version and when; changes found by actor.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 19:39:09.382355
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("device_metadata", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reverted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reverted_by", sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f("ix_device_metadata_actor"), ["actor"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("device_metadata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_metadata_actor"))
        batch_op.drop_column("reverted_by")
        batch_op.drop_column("reverted_at")
