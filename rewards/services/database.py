"""Use cases about the database itself: open it ready for work, migrate it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, make_url

from rewards.db import migrate
from rewards.db.engine import make_engine


class DatabaseNotReady(RuntimeError):
    """The database is unreachable or not at the latest migration; says what to do."""


def open_database(url: str, *, serving: bool = False) -> Engine:
    """An engine for `url`, checked to be reachable and at the latest migration. A SQLite
    file that does not exist is refused, not made empty by connecting to it."""
    missing = _missing_sqlite_file(url)
    if missing is not None:
        raise DatabaseNotReady(
            f"there is no database at {missing}: make it with `rewards db upgrade` (or "
            "`rewards demo` for a demo), or point REWARDS_DATABASE_URL at yours"
        )
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


def _missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file `url` names that does not exist, else None."""
    parsed = make_url(url)
    path = parsed.database
    if not parsed.drivername.startswith("sqlite") or not path or path == ":memory:":
        return None
    if path.startswith("file:") or Path(path).exists():
        return None
    return path


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
