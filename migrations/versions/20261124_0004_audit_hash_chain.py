"""Audit hash chain: each entry's hash covers the one before it; a head row serializes
appenders and records where the log ends.

Existing entries are chained in id order. The append-only triggers are lifted only for
that backfill (SQLite's batch mode rebuilds the table, so they are created again).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 17:46:56.885325
"""

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64
_SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END
    """,
)


def _hash(prev: str, at: datetime, actor: str, action: str, subject: str, details: str) -> str:
    # the same definition as rewards.db.audit.entry_hash, frozen here with this revision
    moment = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    body = json.dumps(
        [prev, moment, actor, action, subject, details], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _triggers(enable: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        verb = "ENABLE" if enable else "DISABLE"
        op.execute(f"ALTER TABLE audit_log {verb} TRIGGER audit_log_append_only")
    elif enable:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")


def upgrade() -> None:
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    _triggers(enable=False)
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))

    bind = op.get_bind()
    log = sa.table(
        "audit_log",
        sa.column("id", sa.Integer()),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("subject", sa.String()),
        sa.column("details", sa.Text()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    head, count = GENESIS, 0
    rows = bind.execute(
        sa.select(
            log.c.id, log.c.at, log.c.actor, log.c.action, log.c.subject, log.c.details
        ).order_by(log.c.id)
    ).all()
    for row in rows:
        at = row.at if isinstance(row.at, datetime) else datetime.fromisoformat(str(row.at))
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        digest = _hash(head, at, row.actor, row.action, row.subject, row.details)
        bind.execute(log.update().where(log.c.id == row.id).values(prev_hash=head, hash=digest))
        head, count = digest, count + 1
    bind.execute(
        sa.text("INSERT INTO audit_head (id, hash, entries) VALUES (1, :hash, :entries)"),
        {"hash": head, "entries": count},
    )

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_audit_log_hash"), ["hash"])
    _triggers(enable=True)


def downgrade() -> None:
    _triggers(enable=False)
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_log_hash"), type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
    _triggers(enable=True)
    op.drop_table("audit_head")
