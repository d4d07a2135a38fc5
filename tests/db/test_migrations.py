"""Migrations: upgrade, downgrade, upgrade again, and the models match the migrations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from rewards.core import to_us
from rewards.db import audit
from rewards.db.engine import make_engine, unit_of_work
from rewards.db.interval_reads import load_intervals
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


def test_intervals_move_to_open_rows_and_back_with_0011(databases: Databases, dialect: str) -> None:
    """0011 moves each device's latest interval to `open_intervals`; readers see the same
    intervals before and after, and downgrading puts them all back."""
    url = databases.fresh(dialect, migrated=False)
    upgrade(url, "0010")
    rows = [  # device, start, end: gpu-1 has three intervals, gpu-2 one
        ("gpu-1", 10, 20), ("gpu-1", 100, 200), ("gpu-1", 1000, 2000), ("gpu-2", 5, 6),
    ]  # fmt: skip
    engine = make_engine(url)
    with engine.begin() as connection:
        for device, start, end in rows:
            connection.execute(
                text(
                    'INSERT INTO online_intervals (device_id, start, "end", first_boot_id, '
                    "first_agent_version, last_boot_id, last_agent_version) "
                    "VALUES (:d, :s, :e, 'b', '1.0', 'b', '1.0')"
                ),
                {"d": device, "s": start, "e": end},
            )
    upgrade(url)

    def table(name: str) -> list[tuple[str, int, int]]:
        with engine.connect() as connection:
            found = connection.execute(text(f'SELECT device_id, start, "end" FROM {name}'))  # noqa: S608
            return sorted((str(d), int(s), int(e)) for d, s, e in found)

    assert table("open_intervals") == [("gpu-1", 1000, 2000), ("gpu-2", 5, 6)]
    assert table("online_intervals") == [("gpu-1", 10, 20), ("gpu-1", 100, 200)]
    with unit_of_work(engine) as session:
        loaded = load_intervals(session.connection())
    assert [(d, to_us(s), to_us(e)) for d, s, e, *_ in loaded.iter_rows()] == rows
    downgrade(url, "0010")
    assert table("online_intervals") == sorted(rows)
    engine.dispose()


def test_closed_intervals_drop_a_last_boot_or_version_equal_to_the_first_with_0012(
    databases: Databases, dialect: str
) -> None:
    """0012 stores a closed interval's last boot and version as NULL where they equal the
    first (a slimmer row); readers see the same intervals, and a downgrade writes them back."""
    url = databases.fresh(dialect, migrated=False)
    upgrade(url, "0011")
    rows = [  # device, start, end, first boot, first version, last boot, last version
        ("gpu-1", 10, 20, "b1", "1.0", "b1", "1.0"),  # nothing changed inside
        ("gpu-1", 30, 40, "b1", "1.0", "b2", "1.0"),  # a restart inside
        ("gpu-1", 50, 60, "b2", "1.0", "b2", "1.1"),  # an upgrade inside
        ("gpu-2", 5, 6, "B", "1.0", "b", "1.0"),  # case matters: not equal
    ]
    engine = make_engine(url)
    insert = text(
        'INSERT INTO online_intervals (device_id, start, "end", first_boot_id, '
        "first_agent_version, last_boot_id, last_agent_version) "
        "VALUES (:d, :s, :e, :fb, :fv, :lb, :lv)"
    )
    with engine.begin() as connection:
        for d, s, e, fb, fv, lb, lv in rows:
            connection.execute(
                insert, {"d": d, "s": s, "e": e, "fb": fb, "fv": fv, "lb": lb, "lv": lv}
            )

    def stored() -> list[tuple[object, ...]]:
        with engine.connect() as connection:
            found = connection.execute(
                text(
                    'SELECT device_id, start, "end", first_boot_id, first_agent_version, '
                    "last_boot_id, last_agent_version FROM online_intervals"
                )
            )
            return sorted(tuple(r) for r in found)

    upgrade(url)
    assert [r[5:] for r in stored()] == [(None, None), ("b2", None), (None, "1.1"), ("b", None)]
    with unit_of_work(engine) as session:
        loaded = load_intervals(session.connection())
    assert [(d, to_us(s), to_us(e), *rest) for d, s, e, *rest in loaded.iter_rows()] == rows
    downgrade(url, "0011")
    assert stored() == rows
    engine.dispose()
