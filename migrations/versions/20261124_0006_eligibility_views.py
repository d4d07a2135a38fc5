"""Eligibility views: the season's device-epochs so far, one JSON document per supplier.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 18:45:47.954239
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eligibility_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("season", sa.String(length=80), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("epochs", sa.BigInteger(), nullable=False),
        sa.Column("input_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("policy_hash", sa.String(length=64), nullable=False),
        sa.Column("code_version", sa.String(length=200), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("owners", sa.BigInteger(), nullable=False),
        sa.Column("job_run_id", sa.BigInteger(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eligibility_views")),
    )
    with op.batch_alter_table("eligibility_views", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_eligibility_views_season"), ["season"], unique=False)

    op.create_table(
        "eligibility_documents",
        sa.Column("view_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["view_id"],
            ["eligibility_views.id"],
            name=op.f("fk_eligibility_documents_view_id_eligibility_views"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("view_id", "owner_id", name=op.f("pk_eligibility_documents")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # compressed already (zlib): store out of line without trying again
        op.execute("ALTER TABLE eligibility_documents ALTER COLUMN document SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("eligibility_documents")
    with op.batch_alter_table("eligibility_views", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_eligibility_views_season"))

    op.drop_table("eligibility_views")
