"""Trust anchors: the feed's observed_at watermark, which closes epochs (DESIGN 10).

`ingest_cursors.watermark` is the latest observed_at (UTC µs) a stream has stored; the
heartbeats stream's is backfilled from the stored heartbeats.

Revision ID: 0009
Revises: 0007
Create Date: 2026-11-29 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_cursors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("watermark", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE ingest_cursors SET watermark = (SELECT max(observed_at) FROM heartbeats) "
        "WHERE stream = 'heartbeats'"
    )


def downgrade() -> None:
    with op.batch_alter_table("ingest_cursors", schema=None) as batch_op:
        batch_op.drop_column("watermark")
