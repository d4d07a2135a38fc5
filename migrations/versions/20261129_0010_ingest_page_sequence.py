"""The page sequence of each ingest stream: how many pages it has committed, so the
heartbeat archive (DESIGN 8) can key each page's write by it and a page retried after a
crash replaces its earlier attempt instead of adding to it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ingest_cursors",
        sa.Column("pages", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("ingest_cursors", "pages")
