"""Alerts in the database: who is blocked, and listing."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session, col

from rewards.db.tables import Alert


def blocked_actors(session: Session) -> set[str]:
    """Actors with an open, blocking alert."""
    return set(
        session.execute(
            select(col(Alert.actor)).where(col(Alert.status) == "open", col(Alert.blocked))
        ).scalars()
    )


def alerts(
    session: Session,
    *,
    status: str | None,
    limit: int,
    actor: str | None = None,
    before_id: int | None = None,
) -> list[Alert]:
    """Alerts, newest first (`before_id`: those older than that alert)."""
    query = select(Alert).order_by(col(Alert.id).desc()).limit(limit)
    if status:
        query = query.where(col(Alert.status) == status)
    if actor is not None:
        query = query.where(col(Alert.actor) == actor)
    if before_id is not None:
        query = query.where(col(Alert.id) < before_id)
    return list(session.scalars(query))
