"""Eligibility views keep, beside each supplier's document, one per device they own: its
letters for the grid and its rows with their explanations, so a supplier's pages read a
device or the letters instead of parsing every device-epoch the supplier has (550 ms for
2,000 devices; issue 17). Derived data: filled by the next view build.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eligibility_device_documents",
        sa.Column("view_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("states", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["view_id"],
            ["eligibility_views.id"],
            name=op.f("fk_eligibility_device_documents_view_id_eligibility_views"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "view_id", "owner_id", "device_id", name=op.f("pk_eligibility_device_documents")
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        # compressed already (zlib): store out of line without trying again
        op.execute(
            "ALTER TABLE eligibility_device_documents ALTER COLUMN document SET STORAGE EXTERNAL"
        )


def downgrade() -> None:
    op.drop_table("eligibility_device_documents")
