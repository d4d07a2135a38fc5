"""Pseudonymous Merkle leaves (DESIGN 9, issue 18): a payout's leaf names the owner's
commitment, SHA-256(salt || owner_id), instead of the owner_id, so the claims file can be
public without listing who is paid what. `snapshot_payouts.commitment` keeps each leaf's
commitment; `snapshots.leaf_format` says which kind of leaf a snapshot's root is over (1,
owner ids, for every snapshot made before this; 2, commitments).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 09:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD and DROP COLUMN on both databases (SQLite has both since 3.35): a batch copy of
# `snapshots` would drop and remake the table under the triggers that keep published
# snapshots immutable.


def upgrade() -> None:
    op.add_column("snapshot_payouts", sa.Column("commitment", sa.String(length=64), nullable=True))
    op.add_column(
        "snapshots", sa.Column("leaf_format", sa.Integer(), server_default="1", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("snapshots", "leaf_format")
    op.drop_column("snapshot_payouts", "commitment")
