"""Trust anchors: the feed's observed_at watermark, which closes epochs (DESIGN 10); the
audit log's head recorded in every snapshot, and a head that moves only with the log
(DESIGN 9).

* `ingest_cursors.watermark`: the latest observed_at (UTC µs) a stream has stored; the
  heartbeats stream's is backfilled from the stored heartbeats.
* `snapshots.audit_entries/audit_hash` (after the run is audited) and
  `published_audit_entries/published_audit_hash` (after the publication is): frozen like
  the rest of a snapshot, so the snapshot guards are recreated with them.
* `audit_log` refuses TRUNCATE (PostgreSQL); `audit_head` refuses INSERT, DELETE and
  TRUNCATE, and an UPDATE unless it leaves the head as it is (the appenders' lock) or
  moves it forward to the log's last entry by exactly the entries appended since.

Columns are added and dropped with plain ALTER TABLE (SQLite has both since 3.35): batch
mode would rebuild `snapshots` on SQLite and lose its guard triggers.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# revision 0003's column lists, and the columns this revision adds to each
_FROZEN = (
    "id", "season", "version", "epoch_first", "epoch_last", "policy", "policy_hash",
    "input_fingerprint", "code_version", "trigger", "triggered_by", "reason",
    "device_epoch_rows", "devices", "suppliers", "eligible_device_epochs", "total_pool",
    "total_paid", "total_unassigned", "content_hash", "merkle_root", "job_run_id", "created_at",
)  # fmt: skip
_PUBLISHING = ("published_at", "published_by", "supersedes_id")
_RUN_HEAD = ("audit_entries", "audit_hash")
_PUBLISHED_HEAD = ("published_audit_entries", "published_audit_hash")


def _row(prefix: str, columns: tuple[str, ...]) -> str:
    return "ROW(" + ", ".join(f'{prefix}."{c}"' for c in columns) + ")"


def _pg_guard(frozen: tuple[str, ...], publishing: tuple[str, ...]) -> str:
    # revision 0003's snapshots_guard() over the given column lists
    return f"""
        CREATE OR REPLACE FUNCTION snapshots_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
            IF {_row("NEW", frozen)} IS DISTINCT FROM {_row("OLD", frozen)} THEN
                RAISE EXCEPTION 'snapshot %: only its status can change', OLD.id;
            END IF;
            IF OLD.status = 'draft' AND NEW.status IN ('draft', 'published') THEN
                RETURN NEW;
            END IF;
            IF OLD.status = 'published' AND NEW.status = 'superseded'
               AND {_row("NEW", publishing)} IS NOT DISTINCT FROM {_row("OLD", publishing)}
            THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'snapshot % is %: it cannot be changed', OLD.id, OLD.status;
        END;
        $$
    """


def _sqlite_changed(columns: tuple[str, ...]) -> str:
    return " OR ".join(f'NEW."{c}" IS NOT OLD."{c}"' for c in columns)


def _sqlite_guards(frozen: tuple[str, ...], publishing: tuple[str, ...]) -> list[str]:
    # revision 0003's two update guards of snapshots over the given column lists
    return [
        "DROP TRIGGER IF EXISTS snapshots_frozen",
        "DROP TRIGGER IF EXISTS snapshots_status_flow",
        f"""
        CREATE TRIGGER snapshots_frozen BEFORE UPDATE ON snapshots
        WHEN {_sqlite_changed(frozen)}
        BEGIN SELECT RAISE(ABORT, 'snapshot: only its status can change'); END
        """,
        f"""
        CREATE TRIGGER snapshots_status_flow BEFORE UPDATE ON snapshots
        WHEN NOT (
            (OLD.status = 'draft' AND NEW.status IN ('draft', 'published'))
            OR (OLD.status = 'published' AND NEW.status = 'superseded'
                AND NOT ({_sqlite_changed(publishing)}))
        )
        BEGIN SELECT RAISE(ABORT, 'snapshot is not a draft: it cannot be changed'); END
        """,
    ]


# The head may stay as it is (the appenders' lock) or move forward to the log's last
# entry by exactly the entries after the one it pointed at; nothing else.
_FORWARD = """
    (NEW.id = OLD.id AND NEW.hash = OLD.hash AND NEW.entries = OLD.entries)
    OR (NEW.id = OLD.id AND NEW.entries > OLD.entries
        AND NEW.hash = (SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1)
        AND NEW.entries - OLD.entries = (
            SELECT count(*) FROM audit_log
            WHERE id > COALESCE((SELECT id FROM audit_log WHERE hash = OLD.hash), 0)))
"""

_PG_HEAD_UP = (
    """
    CREATE FUNCTION audit_log_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME;
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_truncate()
    """,
    f"""
    CREATE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND ({_FORWARD}) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit_head moves only forward with audit_log: % refused', TG_OP;
    END;
    $$
    """,
    """
    CREATE TRIGGER audit_head_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_guard()
    """,
    """
    CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_truncate()
    """,
)
_PG_HEAD_DOWN = (
    "DROP TRIGGER IF EXISTS audit_head_no_truncate ON audit_head",
    "DROP TRIGGER IF EXISTS audit_head_guard ON audit_head",
    "DROP FUNCTION IF EXISTS audit_head_guard()",
    "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
    "DROP FUNCTION IF EXISTS audit_log_refuse_truncate()",
)
_SQLITE_HEAD_UP = (
    """
    CREATE TRIGGER audit_head_no_insert BEFORE INSERT ON audit_head
    BEGIN SELECT RAISE(ABORT, 'audit_head moves only forward with audit_log: INSERT refused'); END
    """,
    """
    CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
    BEGIN SELECT RAISE(ABORT, 'audit_head moves only forward with audit_log: DELETE refused'); END
    """,
    f"""
    CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head
    WHEN NOT ({_FORWARD})
    BEGIN SELECT RAISE(ABORT, 'audit_head moves only forward with audit_log: UPDATE refused'); END
    """,
)
_SQLITE_HEAD_DOWN = (
    "DROP TRIGGER IF EXISTS audit_head_forward_only",
    "DROP TRIGGER IF EXISTS audit_head_no_delete",
    "DROP TRIGGER IF EXISTS audit_head_no_insert",
)


def _run(statements: Sequence[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.add_column("ingest_cursors", sa.Column("watermark", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE ingest_cursors SET watermark = (SELECT max(observed_at) FROM heartbeats) "
        "WHERE stream = 'heartbeats'"
    )
    for name in (*_RUN_HEAD, *_PUBLISHED_HEAD):
        kind = sa.BigInteger() if name.endswith("entries") else sa.String(length=64)
        op.add_column("snapshots", sa.Column(name, kind, nullable=True))
    frozen, publishing = _FROZEN + _RUN_HEAD, _PUBLISHING + _PUBLISHED_HEAD
    if pg:
        _run([_pg_guard(frozen, publishing), *_PG_HEAD_UP])
    else:
        _run([*_sqlite_guards(frozen, publishing), *_SQLITE_HEAD_UP])


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:
        _run([*_PG_HEAD_DOWN, _pg_guard(_FROZEN, _PUBLISHING)])
    else:
        _run([*_SQLITE_HEAD_DOWN, *_sqlite_guards(_FROZEN, _PUBLISHING)])
    for name in (*_PUBLISHED_HEAD, *_RUN_HEAD):
        op.drop_column("snapshots", name)
    op.drop_column("ingest_cursors", "watermark")
