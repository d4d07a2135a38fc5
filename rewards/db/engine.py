"""Engines and sessions for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlmodel import Session

SERVING_WAIT_S = 3


def make_engine(url: str, *, serving: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and enforced foreign keys.

    On PostgreSQL a connection is pinged before each use, so jobs survive a server restart
    unharmed. `serving` (the API) skips the ping, which cost an extra round trip per request
    (at 200 requests/s its p99 went from about 55-95 ms to 180-360 ms, bench/api_load.py),
    and recycles connections after 5 minutes instead: after a restart the first request on
    each stale connection fails and SQLAlchemy drops the pool.

    A serving engine also waits at most SERVING_WAIT_S for a lock or a connection, so that
    a busy, locked or unreachable database answers 503 within seconds (DESIGN 10) rather
    than holding a request for 30 s; jobs keep the patient 30 s."""
    wait_s = SERVING_WAIT_S if serving else 30
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": wait_s}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
            cursor.close()

        return engine
    if serving:
        return create_engine(
            url,
            pool_pre_ping=False,
            pool_recycle=300,
            pool_timeout=wait_s,
            connect_args=_serving_waits(url, wait_s),
            **kwargs,
        )
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _serving_waits(url: str, wait_s: int) -> dict[str, Any]:
    """libpq arguments for a serving connection: a connect timeout and a lock timeout of
    `wait_s`, merged with the URL's own (connect_args replace the URL's query values, so
    `?options=-c search_path=...` would otherwise be lost). What the URL sets explicitly
    wins: libpq applies the last `-c` of a setting, and the URL's options come last."""
    query = make_url(url).query
    waits: dict[str, Any] = {"connect_timeout": query.get("connect_timeout", wait_s)}
    given = query.get("options", "")
    given = " ".join(given) if isinstance(given, tuple) else given
    waits["options"] = f"-c lock_timeout={wait_s * 1000} {given}".strip()
    return waits


@contextmanager
def unit_of_work(engine: Engine) -> Iterator[Session]:
    """One transaction: commits when the block ends, rolls back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextmanager
def consistent_read(engine: Engine) -> Iterator[tuple[Connection, Session]]:
    """A read-only view of the database as of one moment, for reads that must agree with
    each other (a snapshot's inputs): a REPEATABLE READ, read-only transaction on
    PostgreSQL; on SQLite an explicit BEGIN, so every read sees one WAL snapshot (pysqlite
    would not begin a transaction for reads). A concurrent write is wholly in or wholly out.
    Yields the connection (for bulk reads) and an ORM session bound to the same transaction.
    """
    options: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with (
        engine.connect().execution_options(**options) as connection,
        connection.begin(),
        Session(bind=connection) as session,
    ):
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN")
        yield connection, session
