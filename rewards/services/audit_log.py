"""Use cases for the audit log (DESIGN 9): read it by who, what and when, and check its
hash chain end to end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from rewards.db import audit
from rewards.db.engine import unit_of_work

ChainReport = audit.ChainReport  # a plain value: the doors may hold it


@dataclass(frozen=True)
class AuditRecord:
    """One entry of the log as people read it (`details` is its JSON text)."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: str
    hash: str


def verify_audit_log(engine: Engine) -> ChainReport:
    """Recompute every entry's hash in order, compare the end with the head, and check
    that every head a snapshot recorded is still in the log."""
    with unit_of_work(engine) as session:
        return audit.verify_chain(session)


def audit_entries(
    engine: Engine,
    *,
    actor: str | None = None,
    action: str | None = None,
    subject: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditRecord]:
    """Entries newest first, filtered (see `db.audit.filtered`), a page at a time."""
    with unit_of_work(engine) as session:
        found = audit.filtered(
            session, actor=actor, action=action, subject=subject, since=since, until=until,
            before_id=before_id, limit=limit,
        )  # fmt: skip
        return [
            AuditRecord(e.id or 0, e.at, e.actor, e.action, e.subject, e.details, e.hash)
            for e in found
        ]


def audit_actions(engine: Engine) -> list[str]:
    """The actions on record, sorted."""
    with unit_of_work(engine) as session:
        return audit.actions(session)
