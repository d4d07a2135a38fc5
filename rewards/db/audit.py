"""The append-only audit log (the database refuses updates and deletes)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlmodel import Session, col

from rewards.db.tables import AuditEntry


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
    session.connection().execute(
        insert(AuditEntry),
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
