"""The append-only, hash-chained audit log (the database refuses updates and deletes).

Each entry's hash is SHA-256 of the JSON list [previous hash, at (RFC 3339, microseconds),
actor, action, subject, details] with no spaces; the first entry's previous hash is 64
zeros. Appenders first lock the single `audit_head` row (an UPDATE, which locks on both
databases), so concurrent transactions chain one after the other.

The database lets the head move only forward with the log (triggers, revision 0009), and
every snapshot records the head after its run and its publication, so a log truncated or
rewound by someone who lifted the triggers is still caught against those anchors.
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

from rewards.db.tables import AuditEntry, AuditHead, Snapshot

GENESIS = "0" * 64


@dataclass(frozen=True)
class Head:
    """Where the log ends: how many entries it has and the last one's hash."""

    entries: int
    hash: str


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


def append_many(session: Session, entries: list[dict[str, Any]]) -> Head:
    """Record actions (dicts of at, actor, action, subject, details as JSON text) in the
    caller's transaction, chained after the current head; returns the new head."""
    connection = session.connection()
    if not entries:  # nothing to chain: no lock, so callers with nothing to say never wait
        return current_head(session)
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
    return Head(count + len(rows), head)


def current_head(session: Session) -> Head:
    """The log's head as this transaction sees it, without taking the appenders' lock."""
    row = session.connection().execute(select(col(AuditHead.hash), col(AuditHead.entries))).first()
    return Head(int(row[1]), str(row[0])) if row else Head(0, GENESIS)


def append(
    session: Session,
    *,
    now: datetime,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any],
) -> Head:
    """Record one action in the caller's transaction; returns the new head."""
    return append_many(
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


def filtered(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    subject: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Audit entries, newest first: by who (`actor`), what (`action`, or its prefix when
    it ends with '.': 'incident.'), about what (`subject`), when ([since, until)), a page
    at a time (keyset: ids below `before_id`)."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if actor:
        query = query.where(col(AuditEntry.actor) == actor)
    if action and action.endswith("."):
        query = query.where(col(AuditEntry.action).startswith(action, autoescape=True))
    elif action:
        query = query.where(col(AuditEntry.action) == action)
    if subject:
        query = query.where(col(AuditEntry.subject) == subject)
    if since is not None:
        query = query.where(col(AuditEntry.at) >= since)
    if until is not None:
        query = query.where(col(AuditEntry.at) < until)
    if before_id is not None:
        query = query.where(col(AuditEntry.id) < before_id)
    return list(session.scalars(query))


def actions(session: Session) -> list[str]:
    """Every action the log holds, sorted (for the page's filter)."""
    query = select(col(AuditEntry.action)).distinct().order_by(col(AuditEntry.action))
    return [str(a) for a in session.scalars(query)]


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


def anchors(session: Session) -> dict[int, list[tuple[str, str]]]:
    """The heads recorded in snapshots: entry number -> [(hash, who recorded it)]."""
    found: dict[int, list[tuple[str, str]]] = {}
    rows = session.execute(
        select(
            col(Snapshot.season),
            col(Snapshot.version),
            col(Snapshot.audit_entries),
            col(Snapshot.audit_hash),
            col(Snapshot.published_audit_entries),
            col(Snapshot.published_audit_hash),
        )
    )
    for season, number, entries, digest, published_entries, published_digest in rows:
        for when, n, h in (
            ("run", entries, digest),
            ("publication", published_entries, published_digest),
        ):
            if n is not None and h is not None:
                found.setdefault(int(n), []).append((str(h), f"{season}-v{number} ({when})"))
    return found


def verify_chain(session: Session) -> ChainReport:
    """Recompute every hash in order, compare the end with the head, and check that the
    log still holds every head a snapshot recorded (same entry number, same hash)."""
    problems: list[str] = []
    recorded = anchors(session)
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
        for digest, who in recorded.pop(count, []):
            if digest != entry.hash:
                problems.append(
                    f"{who} recorded the log's head at entry {count} ({digest[:12]}...), but "
                    f"entry {count} is now {entry.hash[:12]}...: the log was rewritten"
                )
        if len(problems) >= 20:
            problems.append("... stopped after 20 problems")
            return ChainReport(count, problems)
    for position, found in sorted(recorded.items()):
        for digest, who in found:
            problems.append(
                f"{who} recorded the log's head at entry {position} ({digest[:12]}...), but "
                f"the log has only {count} entries: it was truncated or rewound"
            )
    head = session.get(AuditHead, 1)
    if head is None:
        problems.append("audit_head is missing")
    elif (head.hash, head.entries) != (previous, count):
        problems.append(
            f"the log ends at entry {count} ({previous[:12]}...) but the head says "
            f"{head.entries} entries ({head.hash[:12]}...): entries were removed or added"
        )
    return ChainReport(count, problems)
