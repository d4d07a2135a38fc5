"""The append-only, hash-chained audit log (the database refuses updates and deletes).

Each entry's hash is SHA-256 of the JSON list [previous hash, at (RFC 3339, microseconds),
actor, action, subject, details] with no spaces; the first entry's previous hash is 64
zeros. Appenders first lock the single `audit_head` row (an UPDATE, which locks on both
databases), so concurrent transactions chain one after the other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text
from sqlmodel import Session, col

from rewards.db.tables import AuditEntry, AuditHead

GENESIS = "0" * 64


def entry_hash(
    prev_hash: str, at: datetime, actor: str, action: str, subject: str, details: str
) -> str:
    moment = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    body = json.dumps(
        [prev_hash, moment, actor, action, subject, details],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _lock_head(connection: Connection) -> tuple[str, int]:
    connection.execute(text("UPDATE audit_head SET hash = hash WHERE id = 1"))
    row = connection.execute(select(col(AuditHead.hash), col(AuditHead.entries))).first()
    if row is None:
        raise RuntimeError("audit_head is missing: run `rewards db upgrade`")
    return str(row[0]), int(row[1])


def append_many(session: Session, entries: list[dict[str, Any]]) -> None:
    """Record actions (dicts of at, actor, action, subject, details as JSON text) in the
    caller's transaction, chained after the current head."""
    if not entries:
        return
    connection = session.connection()
    head, count = _lock_head(connection)
    rows = []
    for entry in entries:
        digest = entry_hash(
            head,
            entry["at"],
            entry["actor"],
            entry["action"],
            entry["subject"],
            entry["details"],
        )
        rows.append({**entry, "prev_hash": head, "hash": digest})
        head = digest
    connection.execute(insert(AuditEntry), rows)
    connection.execute(
        text("UPDATE audit_head SET hash = :hash, entries = :entries WHERE id = 1"),
        {"hash": head, "entries": count + len(rows)},
    )


def append(
    session: Session,
    *,
    now: datetime,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
) -> None:
    """Record one action in the caller's transaction."""
    append_many(
        session,
        [
            {
                "at": now,
                "actor": actor,
                "action": action,
                "subject": subject,
                "details": json.dumps(details, sort_keys=True, default=str),
            }
        ],
    )


def entries(session: Session, *, subject: str | None = None) -> list[AuditEntry]:
    """Audit entries, oldest first, optionally about one subject."""
    query = select(AuditEntry).order_by(col(AuditEntry.id))
    if subject:
        query = query.where(col(AuditEntry.subject) == subject)
    return list(session.scalars(query))


@dataclass(frozen=True)
class ChainReport:
    entries: int
    problems: list[str]

    @property
    def intact(self) -> bool:
        return not self.problems


def _walk(session: Session, batch: int = 10_000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = list(
            session.scalars(
                select(AuditEntry)
                .where(col(AuditEntry.id) > last)
                .order_by(col(AuditEntry.id))
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].id or last


def verify_chain(session: Session) -> ChainReport:
    """Recompute every hash in order and compare the end with the head."""
    problems: list[str] = []
    previous, count = GENESIS, 0
    for entry in _walk(session):
        count += 1
        if entry.prev_hash != previous:
            problems.append(f"entry {entry.id}: does not follow the entry before it")
        expected = entry_hash(
            entry.prev_hash, entry.at, entry.actor, entry.action, entry.subject, entry.details
        )
        if expected != entry.hash:
            problems.append(f"entry {entry.id}: content does not match its hash (edited)")
        previous = entry.hash
        if len(problems) >= 20:
            problems.append("... stopped after 20 problems")
            return ChainReport(count, problems)
    head = session.get(AuditHead, 1)
    if head is None:
        problems.append("audit_head is missing")
    elif (head.hash, head.entries) != (previous, count):
        problems.append(
            f"the log ends at entry {count} ({previous[:12]}...) but the head says "
            f"{head.entries} entries ({head.hash[:12]}...): entries were removed or added"
        )
    return ChainReport(count, problems)
