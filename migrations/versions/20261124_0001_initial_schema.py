"""Initial schema: registry, metadata history, heartbeats, intervals, cursors, runs,
quarantine, append-only audit log and leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 11:36:44.188862
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# The audit log is append-only in the database itself, not only in code: updates and
# deletes are refused by triggers on both dialects.
_PG_AUDIT_UP = (
    """
    CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()
    """,
)
_PG_AUDIT_DOWN = (
    "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
    "DROP FUNCTION IF EXISTS audit_log_refuse_change()",
)
_SQLITE_AUDIT_UP = (
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END
    """,
)
_SQLITE_AUDIT_DOWN = (
    "DROP TRIGGER IF EXISTS audit_log_no_update",
    "DROP TRIGGER IF EXISTS audit_log_no_delete",
)


def _dialect() -> str:
    return op.get_bind().dialect.name


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=80), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_subject"), ["subject"], unique=False)

    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_devices")),
    )
    op.create_table(
        "heartbeats",
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("observed_at", sa.BigInteger(), nullable=False),
        sa.Column("boot_id", sa.String(length=200), nullable=False),
        sa.Column("agent_version", sa.String(length=200), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "observed_at", name=op.f("pk_heartbeats")),
    )
    op.create_table(
        "ingest_cursors",
        sa.Column("stream", sa.String(length=40), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream", name=op.f("pk_ingest_cursors")),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=80), nullable=False),
        sa.Column("trigger", sa.String(length=80), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("pages", sa.BigInteger(), nullable=False),
        sa.Column("records_pulled", sa.BigInteger(), nullable=False),
        sa.Column("records_stored", sa.BigInteger(), nullable=False),
        sa.Column("records_quarantined", sa.BigInteger(), nullable=False),
        sa.Column("records_deleted", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
    )
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_runs_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_runs_started_at"), ["started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_job_runs_status"), ["status"], unique=False)

    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "online_intervals",
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("first_boot_id", sa.String(length=200), nullable=False),
        sa.Column("first_agent_version", sa.String(length=200), nullable=False),
        sa.Column("last_boot_id", sa.String(length=200), nullable=False),
        sa.Column("last_agent_version", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("device_id", "start", name=op.f("pk_online_intervals")),
    )
    with op.batch_alter_table("online_intervals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_online_intervals_device_id_end", ["device_id", "end"], unique=False
        )

    op.create_table(
        "quarantined_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_records")),
    )
    with op.batch_alter_table("quarantined_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quarantined_records_received_at"), ["received_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_quarantined_records_stream"), ["stream"], unique=False)

    op.create_table(
        "suppliers",
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_suppliers")),
    )
    op.create_table(
        "device_metadata",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=200), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("gpu_model", sa.String(length=200), nullable=False),
        sa.Column("gpu_count", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.device_id"], name=op.f("fk_device_metadata_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["suppliers.owner_id"], name=op.f("fk_device_metadata_owner_id_suppliers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_metadata")),
        sa.UniqueConstraint(
            "device_id", "valid_from", name=op.f("uq_device_metadata_device_id_valid_from")
        ),
    )
    with op.batch_alter_table("device_metadata", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_metadata_device_id"), ["device_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_device_metadata_owner_id"), ["owner_id"], unique=False)

    for statement in _PG_AUDIT_UP if _dialect() == "postgresql" else _SQLITE_AUDIT_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in _PG_AUDIT_DOWN if _dialect() == "postgresql" else _SQLITE_AUDIT_DOWN:
        op.execute(statement)
    with op.batch_alter_table("device_metadata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_metadata_owner_id"))
        batch_op.drop_index(batch_op.f("ix_device_metadata_device_id"))

    op.drop_table("device_metadata")
    op.drop_table("suppliers")
    with op.batch_alter_table("quarantined_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantined_records_stream"))
        batch_op.drop_index(batch_op.f("ix_quarantined_records_received_at"))

    op.drop_table("quarantined_records")
    with op.batch_alter_table("online_intervals", schema=None) as batch_op:
        batch_op.drop_index("ix_online_intervals_device_id_end")

    op.drop_table("online_intervals")
    op.drop_table("leases")
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_runs_status"))
        batch_op.drop_index(batch_op.f("ix_job_runs_started_at"))
        batch_op.drop_index(batch_op.f("ix_job_runs_job_id"))

    op.drop_table("job_runs")
    op.drop_table("ingest_cursors")
    op.drop_table("heartbeats")
    op.drop_table("devices")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_subject"))
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
