"""Databases for the tests: every test that asks for `db_url` runs on SQLite and on the
real PostgreSQL server, each on a fresh database of its own copied from a template that
went through the real migrations once per run. Everything made is dropped at the end.

PostgreSQL unreachable: skipped with a message, except under CI (CI=true), where it fails.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from rewards.db.engine import make_engine
from rewards.db.migrate import upgrade

PG_ADMIN_URL = os.environ.get(
    "REWARDS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RUN = uuid.uuid4().hex[:8]
_PG: dict[str, str] = {}  # "problem": why PostgreSQL is unreachable, when it is


def _pg_admin() -> Engine:
    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    try:
        with _pg_admin().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        _PG["problem"] = f"PostgreSQL at {PG_ADMIN_URL} is unreachable ({type(exc).__name__})"
        if os.environ.get("CI"):
            raise pytest.UsageError(
                f"{_PG['problem']}; CI requires it. Start it with: pg_ctlcluster "
                "--skip-systemctl-redirect $(ls /etc/postgresql) main start"
            ) from None


def pytest_report_header() -> str:
    return (
        _PG["problem"] + ": PostgreSQL tests are SKIPPED"
        if _PG
        else (f"PostgreSQL tests run against {PG_ADMIN_URL}")
    )


def pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def create_pg_database(name: str, template: str | None = None) -> str:
    suffix = f" TEMPLATE {template}" if template else ""
    with _pg_admin().connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
    return pg_url(name)


def drop_pg_database(name: str) -> None:
    with _pg_admin().connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Databases:
    """Fresh, migrated databases of one run, copied from per-dialect templates."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[str] = []
        self._sqlite_template: Path | None = None
        self._pg_template: str | None = None
        self._count = 0

    def fresh(self, dialect: str, *, migrated: bool = True) -> str:
        self._count += 1
        if dialect == "sqlite":
            path = self.root / f"test-{self._count}.db"
            if migrated:
                shutil.copy(self._sqlite(), path)
            return f"sqlite:///{path}"
        if _PG:
            pytest.skip(f"{_PG['problem']}; skipping the PostgreSQL half")
        name = f"rewards_test_{RUN}_{self._count}"
        self.made.append(name)
        return create_pg_database(name, self._pg() if migrated else None)

    def copy(self, url: str) -> str:
        """A new database with the content of `url` (which must have no open connections)."""
        self._count += 1
        if url.startswith("sqlite"):
            path = self.root / f"test-{self._count}.db"
            shutil.copy(url.removeprefix("sqlite:///"), path)
            return f"sqlite:///{path}"
        name = f"rewards_test_{RUN}_{self._count}"
        self.made.append(name)
        return create_pg_database(name, url.rsplit("/", 1)[1])

    def _sqlite(self) -> Path:
        if self._sqlite_template is None:
            self._sqlite_template = self.root / "template.db"
            upgrade(f"sqlite:///{self._sqlite_template}")
        return self._sqlite_template

    def _pg(self) -> str:
        if self._pg_template is None:
            name = f"rewards_template_{RUN}"
            self.made.append(name)
            upgrade(create_pg_database(name))
            self._pg_template = name
        return self._pg_template

    def drop_all(self) -> None:
        for name in reversed(self.made):
            drop_pg_database(name)


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(tmp_path_factory.mktemp("databases"))
    yield dbs
    dbs.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(databases: Databases, dialect: str) -> str:
    """A fresh database at the latest migration, on each dialect."""
    return databases.fresh(dialect)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


from tests.processes import fleet_simulator, season_dir  # noqa: E402, F401 - shared fixtures
from tests.seeded import ingested, seeded, small_fleet  # noqa: E402, F401 - shared fixtures


@pytest.fixture(autouse=True)
def _own_archive(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test archives heartbeats into a folder of its own, never the checkout's var/
    (two workers sharing one Delta table would number their pages over each other)."""
    monkeypatch.setenv("REWARDS_ARCHIVE_URL", str(tmp_path_factory.mktemp("archive")))


@pytest.fixture(scope="session", autouse=True)
def _own_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every engine the tests start, in any fixture's scope, uses the tests' publication
    key (tests.seeded.KEY, in a file of mode 0600) and keeps snapshot inputs in a folder
    of the tests', never the checkout's."""
    path = tmp_path_factory.mktemp("key") / "publication-key"
    path.write_text(bytes(range(32)).hex() + "\n")
    path.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REWARDS_PUBLICATION_KEY_FILE", str(path))
        patch.setenv("REWARDS_SNAPSHOT_INPUTS_DIR", str(tmp_path_factory.mktemp("inputs")))
        yield
