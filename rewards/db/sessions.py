"""Web sessions in the database: store, look up, revoke, and forget expired ones."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, select, update
from sqlmodel import Session, col

from rewards.db.tables import WebSession


def add(session: Session, row: WebSession) -> None:
    session.add(row)


def is_active(session: Session, id_hash: str, now: datetime) -> bool:
    """True when the session exists, is not revoked and its token has not expired."""
    found = session.execute(
        select(col(WebSession.id_hash)).where(
            col(WebSession.id_hash) == id_hash,
            col(WebSession.revoked_at).is_(None),
            col(WebSession.expires_at) > now,
        )
    ).first()
    return found is not None


def revoke(session: Session, id_hash: str, now: datetime) -> bool:
    """Revoke the session; False when there was no such session still open."""
    result = session.execute(
        update(WebSession)
        .where(col(WebSession.id_hash) == id_hash, col(WebSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    return bool(getattr(result, "rowcount", 0))


def token_revoked(session: Session, token_hash: str) -> bool:
    """True when a revoked session carried the token with this hash."""
    query = select(
        exists().where(
            col(WebSession.token_hash) == token_hash, col(WebSession.revoked_at).is_not(None)
        )
    )
    return bool(session.execute(query).scalar())


def forget_expired(session: Session, before: datetime) -> int:
    """Delete sessions whose token expired before `before` (their token is refused anyway)."""
    result = session.execute(delete(WebSession).where(col(WebSession.expires_at) < before))
    return int(getattr(result, "rowcount", 0) or 0)
