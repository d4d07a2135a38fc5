"""`job_runs.computed_on`: who computed a run's device shards ("in process", "2 local
processes", "dask tcp://host:8786 (4 workers)"), so a snapshot or view made on a cluster
is recorded with the cluster it used (DESIGN 8). NULL for earlier runs and for jobs that
compute nothing.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 05:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("job_runs", sa.Column("computed_on", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("job_runs", "computed_on")
