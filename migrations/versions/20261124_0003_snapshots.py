"""Snapshots: versioned reward tables over frozen inputs, immutable once published.

The database itself enforces DESIGN 5, not only the code: a snapshot is inserted as a
draft; a draft may become published and a published one superseded, and nothing else
about a snapshot may change; only drafts may be deleted. Its content (the device-epoch rows
as Parquet parts, the payouts and the epoch totals) is never updated, and is inserted or
deleted only while the snapshot is a draft.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 16:22:30.058096
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Every column of snapshots but those publishing sets (status, published_at/by, supersedes_id).
_FROZEN = (
    "id", "season", "version", "epoch_first", "epoch_last", "policy", "policy_hash",
    "input_fingerprint", "code_version", "trigger", "triggered_by", "reason",
    "device_epoch_rows", "devices", "suppliers", "eligible_device_epochs", "total_pool",
    "total_paid", "total_unassigned", "content_hash", "merkle_root", "job_run_id", "created_at",
)  # fmt: skip
_PUBLISHING = ("published_at", "published_by", "supersedes_id")
_CONTENT = ("snapshot_parts", "snapshot_payouts", "snapshot_epochs")


def _row(prefix: str, columns: tuple[str, ...]) -> str:
    return "ROW(" + ", ".join(f'{prefix}."{c}"' for c in columns) + ")"


def _pg_up() -> list[str]:
    statements = [
        f"""
        CREATE FUNCTION snapshots_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.status <> 'draft' THEN
                    RAISE EXCEPTION 'a snapshot is created as a draft, not %', NEW.status;
                END IF;
                RETURN NEW;
            END IF;
            IF TG_OP = 'DELETE' THEN
                IF OLD.status = 'draft' THEN RETURN OLD; END IF;
                RAISE EXCEPTION 'snapshot % is %: it cannot be deleted', OLD.id, OLD.status;
            END IF;
            IF {_row("NEW", _FROZEN)} IS DISTINCT FROM {_row("OLD", _FROZEN)} THEN
                RAISE EXCEPTION 'snapshot %: only its status can change', OLD.id;
            END IF;
            IF OLD.status = 'draft' AND NEW.status IN ('draft', 'published') THEN
                RETURN NEW;
            END IF;
            IF OLD.status = 'published' AND NEW.status = 'superseded'
               AND {_row("NEW", _PUBLISHING)} IS NOT DISTINCT FROM {_row("OLD", _PUBLISHING)}
            THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'snapshot % is %: it cannot be changed', OLD.id, OLD.status;
        END;
        $$
        """,
        """
        CREATE TRIGGER snapshots_guard BEFORE INSERT OR UPDATE OR DELETE ON snapshots
        FOR EACH ROW EXECUTE FUNCTION snapshots_guard()
        """,
        """
        CREATE FUNCTION snapshot_content_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is immutable: % refused', TG_TABLE_NAME, TG_OP;
        END;
        $$
        """,
        """
        CREATE FUNCTION snapshot_content_draft_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (
                SELECT 1 FROM (SELECT DISTINCT snapshot_id FROM changed) c
                LEFT JOIN snapshots s ON s.id = c.snapshot_id
                WHERE s.id IS NULL OR s.status <> 'draft'
            ) THEN
                RAISE EXCEPTION '%: % refused, the snapshot is missing or not a draft',
                    TG_TABLE_NAME, TG_OP;
            END IF;
            RETURN NULL;
        END;
        $$
        """,
        """
        CREATE TRIGGER snapshots_no_truncate BEFORE TRUNCATE ON snapshots
        FOR EACH STATEMENT EXECUTE FUNCTION snapshot_content_refuse()
        """,
    ]
    for table in _CONTENT:
        statements += [
            f"""
            CREATE TRIGGER {table}_no_update BEFORE UPDATE OR TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION snapshot_content_refuse()
            """,
            f"""
            CREATE TRIGGER {table}_insert_into_draft AFTER INSERT ON {table}
            REFERENCING NEW TABLE AS changed
            FOR EACH STATEMENT EXECUTE FUNCTION snapshot_content_draft_only()
            """,
            f"""
            CREATE TRIGGER {table}_delete_from_draft AFTER DELETE ON {table}
            REFERENCING OLD TABLE AS changed
            FOR EACH STATEMENT EXECUTE FUNCTION snapshot_content_draft_only()
            """,
        ]
    return statements


def _pg_down() -> list[str]:
    return [
        f"DROP TRIGGER IF EXISTS {name} ON {table}"
        for table in _CONTENT
        for name in (
            f"{table}_no_update",
            f"{table}_insert_into_draft",
            f"{table}_delete_from_draft",
        )
    ] + [
        "DROP TRIGGER IF EXISTS snapshots_guard ON snapshots",
        "DROP TRIGGER IF EXISTS snapshots_no_truncate ON snapshots",
        "DROP FUNCTION IF EXISTS snapshot_content_draft_only()",
        "DROP FUNCTION IF EXISTS snapshot_content_refuse()",
        "DROP FUNCTION IF EXISTS snapshots_guard()",
    ]


def _sqlite_changed(columns: tuple[str, ...]) -> str:
    return " OR ".join(f'NEW."{c}" IS NOT OLD."{c}"' for c in columns)


def _sqlite_up() -> list[str]:
    statements = [
        """
        CREATE TRIGGER snapshots_insert_draft BEFORE INSERT ON snapshots
        WHEN NEW.status <> 'draft'
        BEGIN SELECT RAISE(ABORT, 'a snapshot is created as a draft'); END
        """,
        """
        CREATE TRIGGER snapshots_no_delete BEFORE DELETE ON snapshots
        WHEN OLD.status <> 'draft'
        BEGIN SELECT RAISE(ABORT, 'snapshot is not a draft: it cannot be deleted'); END
        """,
        f"""
        CREATE TRIGGER snapshots_frozen BEFORE UPDATE ON snapshots
        WHEN {_sqlite_changed(_FROZEN)}
        BEGIN SELECT RAISE(ABORT, 'snapshot: only its status can change'); END
        """,
        f"""
        CREATE TRIGGER snapshots_status_flow BEFORE UPDATE ON snapshots
        WHEN NOT (
            (OLD.status = 'draft' AND NEW.status IN ('draft', 'published'))
            OR (OLD.status = 'published' AND NEW.status = 'superseded'
                AND NOT ({_sqlite_changed(_PUBLISHING)}))
        )
        BEGIN SELECT RAISE(ABORT, 'snapshot is not a draft: it cannot be changed'); END
        """,
    ]
    for table in _CONTENT:
        parent = "(SELECT status FROM snapshots WHERE id = {}.snapshot_id) IS NOT 'draft'"
        statements += [
            f"""
            CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is immutable: UPDATE refused'); END
            """,
            f"""
            CREATE TRIGGER {table}_insert_into_draft BEFORE INSERT ON {table}
            WHEN {parent.format("NEW")}
            BEGIN SELECT RAISE(ABORT, '{table}: INSERT refused, the snapshot is not a draft'); END
            """,
            f"""
            CREATE TRIGGER {table}_delete_from_draft BEFORE DELETE ON {table}
            WHEN {parent.format("OLD")}
            BEGIN SELECT RAISE(ABORT, '{table}: DELETE refused, the snapshot is not a draft'); END
            """,
        ]
    return statements


def _sqlite_down() -> list[str]:
    names = ["snapshots_insert_draft", "snapshots_no_delete", "snapshots_frozen"]
    names += ["snapshots_status_flow"]
    for table in _CONTENT:
        names += [f"{table}_no_update", f"{table}_insert_into_draft", f"{table}_delete_from_draft"]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in names]


def _guards(up: bool) -> list[str]:
    if op.get_bind().dialect.name == "postgresql":
        return _pg_up() if up else _pg_down()
    return _sqlite_up() if up else _sqlite_down()


revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("season", sa.String(length=80), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("epoch_first", sa.BigInteger(), nullable=False),
        sa.Column("epoch_last", sa.BigInteger(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("policy_hash", sa.String(length=64), nullable=False),
        sa.Column("input_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("code_version", sa.String(length=200), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("triggered_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("device_epoch_rows", sa.BigInteger(), nullable=False),
        sa.Column("devices", sa.BigInteger(), nullable=False),
        sa.Column("suppliers", sa.BigInteger(), nullable=False),
        sa.Column("eligible_device_epochs", sa.BigInteger(), nullable=False),
        sa.Column("total_pool", sa.BigInteger(), nullable=False),
        sa.Column("total_paid", sa.BigInteger(), nullable=False),
        sa.Column("total_unassigned", sa.BigInteger(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("merkle_root", sa.String(length=64), nullable=False),
        sa.Column("job_run_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["snapshots.id"], name=op.f("fk_snapshots_supersedes_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
        sa.UniqueConstraint("season", "version", name=op.f("uq_snapshots_season_version")),
    )
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_snapshots_season"), ["season"], unique=False)
        batch_op.create_index(
            "ix_snapshots_one_published",
            ["season"],
            unique=True,
            sqlite_where=sa.text("status = 'published'"),
            postgresql_where=sa.text("status = 'published'"),
        )

    op.create_table(
        "snapshot_epochs",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("pool", sa.BigInteger(), nullable=False),
        sa.Column("paid", sa.BigInteger(), nullable=False),
        sa.Column("unassigned", sa.BigInteger(), nullable=False),
        sa.Column("eligible_devices", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_snapshot_epochs_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "epoch", name=op.f("pk_snapshot_epochs")),
    )
    op.create_table(
        "snapshot_payouts",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("reward", sa.BigInteger(), nullable=False),
        sa.Column("devices", sa.BigInteger(), nullable=False),
        sa.Column("eligible_device_epochs", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_snapshot_payouts_snapshot_id_snapshots"),
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "owner_id", name=op.f("pk_snapshot_payouts")),
    )
    op.create_table(
        "snapshot_parts",
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("part", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("first_device_id", sa.String(length=200), nullable=False),
        sa.Column("last_device_id", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_snapshot_parts_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "part", name=op.f("pk_snapshot_parts")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Parquet is compressed already: store it out of line without trying again
        op.execute("ALTER TABLE snapshot_parts ALTER COLUMN data SET STORAGE EXTERNAL")
    for statement in _guards(up=True):
        op.execute(statement)


def downgrade() -> None:
    for statement in _guards(up=False):
        op.execute(statement)
    op.drop_table("snapshot_parts")
    op.drop_table("snapshot_payouts")
    op.drop_table("snapshot_epochs")
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_snapshots_one_published")
        batch_op.drop_index(batch_op.f("ix_snapshots_season"))

    op.drop_table("snapshots")
