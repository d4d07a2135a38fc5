"""Migrations: upgrade, downgrade, upgrade again, and the models match the migrations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from rewards.db import audit
from rewards.db.engine import make_engine, unit_of_work
from rewards.db.migrate import current_revision, downgrade, head_revision, upgrade
from rewards.db.tables import metadata
from tests.conftest import Databases


def test_upgrade_downgrade_upgrade_and_no_autogenerate_difference(
    databases: Databases, dialect: str
) -> None:
    url = databases.fresh(dialect, migrated=False)
    engine = make_engine(url)
    upgrade(url)
    assert current_revision(engine) == head_revision(url)
    downgrade(url, "base")
    assert current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'someone-else'",
        "DELETE FROM audit_log",
    ],
)
def test_audit_log_refuses_raw_sql_updates_and_deletes(engine, statement: str) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as session:
        audit.append(
            session,
            now=datetime(2024, 4, 25, 8, 5, tzinfo=UTC),
            actor="admin",
            action="incident.confirm",
            subject="inc-1",
            details={},
        )
    with pytest.raises(DBAPIError, match="append-only"), unit_of_work(engine) as session:
        session.connection().execute(text(statement))
    with unit_of_work(engine) as session:
        assert session.connection().execute(
            text("SELECT actor FROM audit_log")
        ).scalars().all() == ["admin"]
