"""Use cases about the database itself: open it ready for work, migrate it."""

from __future__ import annotations

from sqlalchemy import Engine

from rewards.db import migrate
from rewards.db.engine import make_engine


class DatabaseNotReady(RuntimeError):
    """The database is unreachable or not at the latest migration; says what to do."""


def open_database(url: str, *, serving: bool = False) -> Engine:
    """An engine for `url`, checked to be reachable and at the latest migration."""
    engine = make_engine(url, serving=serving)
    try:
        current = migrate.current_revision(engine)
    except Exception as exc:  # any driver error here means the database is unreachable
        engine.dispose()
        raise DatabaseNotReady(
            f"cannot reach the database ({type(exc).__name__}); check REWARDS_DATABASE_URL"
        ) from None
    if current != migrate.head_revision(url):
        engine.dispose()
        raise DatabaseNotReady(
            f"the database is at revision {current or 'none'}, not the latest; "
            "run `rewards db upgrade` first"
        )
    return engine


def readiness(engine: Engine) -> tuple[str, str]:
    """What /readyz says of the database: ("ok" or "unreachable", and "at head", "behind
    (at R, head H)" or "unknown"). Never raises; no connection detail in the words."""
    try:
        current = migrate.current_revision(engine)
    except Exception:  # any driver error here means the database is unreachable
        return "unreachable", "unknown"
    head = migrate.head_revision(str(engine.url))
    if current == head:
        return "ok", "at head"
    return "ok", f"behind (at {current or 'none'}, head {head})"


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` up to `revision`."""
    migrate.upgrade(url, revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at `url` down to `revision`."""
    migrate.downgrade(url, revision)
