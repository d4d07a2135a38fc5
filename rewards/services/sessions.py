"""Use cases for web sessions (issue 12): open one at sign-in, check it on each page, end it
at sign-out, and tell the API whether a token belongs to an ended session.

Only hashes are stored (SHA-256 of the random session id and of the access token), so the
table gives nothing a browser could present. Everything is in the database, so a sign-out
holds across every worker process.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import Engine

from rewards.db import sessions as store
from rewards.db.engine import unit_of_work
from rewards.db.tables import WebSession

KEEP_AFTER_EXPIRY = timedelta(days=1)  # beyond any leeway on exp, then forgotten


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def open_session(
    engine: Engine, *, subject: str, token: str, expires_at: datetime, now: datetime
) -> str:
    """A new session for `subject` carrying `token` until `expires_at`; returns its id (for
    the cookie). Sessions whose tokens expired a while ago are forgotten on the way."""
    session_id = secrets.token_urlsafe(32)
    with unit_of_work(engine) as session:
        store.forget_expired(session, now - KEEP_AFTER_EXPIRY)
        store.add(
            session,
            WebSession(
                id_hash=_digest(session_id),
                subject=subject,
                token_hash=_digest(token),
                created_at=now,
                expires_at=expires_at,
            ),
        )
    return session_id


def session_is_active(engine: Engine, session_id: str, now: datetime) -> bool:
    """True when the session was opened here, is not ended and its token has not expired."""
    with unit_of_work(engine) as session:
        return store.is_active(session, _digest(session_id), now)


def end_session(engine: Engine, session_id: str, now: datetime) -> bool:
    """End the session: its cookie and its token are refused from now on."""
    with unit_of_work(engine) as session:
        return store.revoke(session, _digest(session_id), now)


def token_revoked(engine: Engine, token: str) -> bool:
    """True when `token` was carried by a session that has been ended."""
    with unit_of_work(engine) as session:
        return store.token_revoked(session, _digest(token))
