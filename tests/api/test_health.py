"""/healthz answers at once, always, even when every worker thread waits on a locked
database; /readyz reports the database, its migrations and the identity provider (issue 12,
item 7; DESIGN 10). Real HTTP, real databases, a real JWKS on loopback."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

from rewards.api.app import create_app
from rewards.api.verifier import make_verifier
from rewards.db.engine import make_engine
from rewards.settings import Settings, get_settings
from rewards.sim.server import BackgroundServer
from tests.api.jwks import ISSUER, TroubledProvider, serving
from tests.conftest import Databases


@contextmanager
def served(engine: Engine, settings: Settings) -> Iterator[str]:
    with BackgroundServer(create_app(engine, settings, make_verifier(settings))) as server:
        yield server.url


@contextmanager
def database_locked(url: str) -> Iterator[None]:
    """Hold the database so that no other connection can read it: PostgreSQL by an ACCESS
    EXCLUSIVE lock on alembic_version, SQLite by an exclusive-mode write transaction."""
    if url.startswith("sqlite"):
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=10)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE alembic_version SET version_num = version_num")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    engine = make_engine(url)
    with engine.connect() as connection:
        connection.execute(text("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE"))
        yield
        connection.rollback()
    engine.dispose()


def test_healthz_answers_at_once_while_every_worker_thread_waits_on_a_locked_database(
    db_url: str, tmp_path: Path
) -> None:
    settings = get_settings(api_threads=2, session_secret_file=tmp_path / "secret")
    engine = make_engine(db_url, serving=True)
    with served(engine, settings) as url:
        assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200
        engine.dispose()  # SQLite's exclusive mode needs no other connection open
        with database_locked(db_url):
            waiting = [
                threading.Thread(target=lambda: httpx.get(f"{url}/readyz", timeout=60), daemon=True)
                for _ in range(4)
            ]
            for thread in waiting:
                thread.start()
            time.sleep(0.5)
            assert any(t.is_alive() for t in waiting), "the lock did not hold readyz"
            for _ in range(5):
                started = time.monotonic()
                answer = httpx.get(f"{url}/healthz", timeout=10)
                took = time.monotonic() - started
                assert answer.status_code == 200 and answer.json() == {"status": "ok"}
                assert took < 0.5, f"/healthz waited {took:.2f} s behind the locked database"
        for thread in waiting:
            thread.join(60)
    engine.dispose()


TTL_S = 3.0  # the keys fetched at start-up are fresh for this long: longer than a busy
# machine takes to answer its first readyz (0.3 s was not, under a full suite on 2 cores)


def test_readyz_reports_database_migrations_and_identity_provider(
    db_url: str, tmp_path: Path
) -> None:
    provider = TroubledProvider(("rsa",))
    engine = make_engine(db_url, serving=True)
    with serving(provider) as jwks_url:
        settings = get_settings(
            auth_issuer=ISSUER,
            auth_jwks_url=jwks_url,
            auth_jwks_ttl_s=TTL_S,
            auth_jwks_min_refresh_s=0,
            session_secret_file=tmp_path / "secret",
        )
        with served(engine, settings) as url:
            deadline = time.monotonic() + 5
            while (ready := httpx.get(f"{url}/readyz", timeout=30)).status_code != 200:
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.1)
            assert ready.json() == {
                "status": "ok",
                "database": "ok",
                "migrations": "at head",
                "identity_provider": "fresh",
            }
            provider.mode = "503"
            time.sleep(TTL_S + 0.1)
            stale = httpx.get(f"{url}/readyz", timeout=30)
            assert stale.status_code == 200  # the last good keys still verify
            assert stale.json()["identity_provider"] == "stale"
    engine.dispose()


def test_readyz_is_503_when_no_key_was_ever_fetched(databases: Databases, tmp_path: Path) -> None:
    provider = TroubledProvider(("rsa",))
    provider.mode = "garbage"
    engine = make_engine(databases.fresh("sqlite"), serving=True)
    with serving(provider) as jwks_url:
        settings = get_settings(
            auth_issuer=ISSUER, auth_jwks_url=jwks_url, session_secret_file=tmp_path / "s"
        )
        with served(engine, settings) as url:
            answer = httpx.get(f"{url}/readyz", timeout=30)
    assert answer.status_code == 503
    assert answer.json()["identity_provider"] == "never fetched"
    assert answer.json()["database"] == "ok"
    engine.dispose()


def test_readyz_says_when_migrations_are_behind_or_no_issuer_is_configured(
    databases: Databases, dialect: str, tmp_path: Path
) -> None:
    engine = make_engine(databases.fresh(dialect, migrated=False), serving=True)
    settings = get_settings(session_secret_file=tmp_path / "secret")
    with served(engine, settings) as url:
        answer = httpx.get(f"{url}/readyz", timeout=30)
    assert answer.status_code == 503
    assert answer.json()["migrations"].startswith("behind")
    assert answer.json()["database"] == "ok"
    assert answer.json()["identity_provider"] == "not configured"
    engine.dispose()


def test_readyz_says_when_the_database_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{closed}/none", serving=True)
    settings = get_settings(session_secret_file=tmp_path / "secret")
    with served(engine, settings) as url:
        answer = httpx.get(f"{url}/readyz", timeout=30)
    assert answer.status_code == 503
    assert answer.json()["database"] == "unreachable"
    assert "nobody" not in answer.text  # no connection details
