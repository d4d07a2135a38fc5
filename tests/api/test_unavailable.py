"""A busy, locked or unreachable database answers 503 with Retry-After within seconds, as
an RFC 9457 problem document, on SQLite and PostgreSQL (issue 12, item 8; DESIGN 10)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from rewards.api.problems import TYPES
from rewards.db.engine import make_engine
from tests.api.loopback import PROBLEM, served_api
from tests.api.test_edge import INCIDENT


@pytest.fixture
def serving_engine(db_url: str) -> Iterator[Engine]:
    """The engine `rewards api` makes (serving=True) on a fresh database of each dialect."""
    engine = make_engine(db_url, serving=True)
    yield engine
    engine.dispose()


def assert_unavailable(answer, started: float) -> None:  # type: ignore[no-untyped-def]
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert int(answer.headers["retry-after"]) > 0
    assert answer.json()["type"] == TYPES["database-unavailable"].uri
    assert time.monotonic() - started < 15, "a locked database should answer within seconds"


def test_admin_writes_on_a_locked_database_answer_503_within_seconds(
    serving_engine: Engine, tmp_path: Path
) -> None:
    url = serving_engine.url
    with served_api(serving_engine, tmp_path) as api:
        if url.get_backend_name() == "sqlite":
            holder = sqlite3.connect(str(url.database), isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # another writer holds the database
            release = holder.close
        else:
            other = make_engine(url.render_as_string(hide_password=False))
            connection = other.connect()
            connection.execute(text("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE"))

            def release() -> None:
                connection.rollback()
                connection.close()
                other.dispose()

        try:
            started = time.monotonic()
            answer = api.call("POST", "/v1/admin/incidents", json=INCIDENT, headers=api.bearer())
            assert_unavailable(answer, started)
        finally:
            release()
        made = api.call("POST", "/v1/admin/incidents", json=INCIDENT, headers=api.bearer())
        assert made.status_code == 201  # and it works again once the lock is gone


def test_an_unreachable_database_answers_503(dialect: str, tmp_path: Path) -> None:
    url = (
        f"sqlite:///{tmp_path}"  # a directory: SQLite cannot open it
        if dialect == "sqlite"
        else "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    )
    engine = make_engine(url, serving=True)
    with served_api(engine, tmp_path) as api:
        started = time.monotonic()
        assert_unavailable(api.call("GET", "/v1/explorer/devices/gpu-1"), started)
        answer = api.call("POST", "/v1/admin/incidents", json=INCIDENT, headers=api.bearer())
        assert_unavailable(answer, started)
    engine.dispose()
