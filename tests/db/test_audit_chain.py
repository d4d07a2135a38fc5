"""The audit log is a hash chain: appends from anywhere chain in order, and an edited,
removed or added entry is found by `rewards audit verify` (both databases)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from rewards.db import audit
from rewards.db.engine import make_engine, unit_of_work
from rewards.db.migrate import upgrade
from tests.processes import rewards

NOW = datetime(2024, 4, 25, 8, 5, tzinfo=UTC)


def record(engine: Engine, n: int, actor: str = "admin@test") -> None:
    for i in range(n):
        with unit_of_work(engine) as session:
            audit.append(
                session,
                now=NOW + timedelta(microseconds=i),
                actor=actor,
                action="incident.confirm",
                subject=f"inc-{i}",
                details={"i": i, "note": "ünïcode"},
            )


def lift_append_only(engine: Engine) -> None:
    """What an attacker with the database owner's rights would do first."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")
        else:
            connection.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            connection.exec_driver_sql("DROP TRIGGER audit_log_no_delete")


def verify(engine: Engine) -> audit.ChainReport:
    with unit_of_work(engine) as session:
        return audit.verify_chain(session)


def test_appends_chain_and_an_edited_entry_is_found(engine: Engine) -> None:
    record(engine, 5)
    report = verify(engine)
    assert (report.entries, report.intact) == (5, True)
    lift_append_only(engine)
    with engine.begin() as connection:
        third = connection.execute(text("SELECT id FROM audit_log ORDER BY id")).scalars().all()[2]
        connection.execute(
            text("UPDATE audit_log SET actor = 'mallory' WHERE id = :id"), {"id": third}
        )
    report = verify(engine)
    assert not report.intact
    assert report.problems == [f"entry {third}: content does not match its hash (edited)"]


def test_a_removed_or_added_entry_is_found(engine: Engine) -> None:
    record(engine, 4)
    lift_append_only(engine)
    with engine.begin() as connection:
        last = connection.execute(text("SELECT max(id) FROM audit_log")).scalar_one()
        connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": last})
    assert any("removed or added" in p for p in verify(engine).problems)
    with engine.begin() as connection:
        first = connection.execute(text("SELECT min(id) FROM audit_log")).scalar_one()
        connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": first})
    assert any("does not follow" in p for p in verify(engine).problems)


def test_concurrent_appenders_never_fork_the_chain(engine: Engine) -> None:
    threads = [
        threading.Thread(target=record, args=(engine, 25, f"admin-{t}@test")) for t in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    report = verify(engine)
    assert (report.entries, report.problems) == (75, [])


def test_the_migration_chains_entries_written_before_it(databases, dialect: str) -> None:  # type: ignore[no-untyped-def]
    url = databases.fresh(dialect, migrated=False)
    upgrade(url, "0003")
    engine = make_engine(url)
    with engine.begin() as connection:
        for i in range(3):
            connection.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, subject, details) "
                    "VALUES (:at, 'admin', 'incident.declare', :subject, '{}')"
                ),
                {"at": NOW + timedelta(seconds=i), "subject": f"inc-{i}"},
            )
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    report = verify(engine)
    assert (report.entries, report.intact) == (3, True)
    record(engine, 2)
    assert verify(engine).entries == 5
    assert verify(engine).intact
    engine.dispose()


def test_rewards_audit_verify_exits_1_on_a_broken_chain(db_url: str, tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}
    env["REWARDS_DATABASE_URL"] = db_url
    engine = make_engine(db_url)
    record(engine, 3)
    done = rewards("audit", "verify", env=env)
    assert done.returncode == 0 and "3 entries" in done.stdout
    lift_append_only(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET details = '{\"i\": 9}' WHERE id > 0"))
    engine.dispose()
    broken = rewards("audit", "verify", env=env)
    assert broken.returncode == 1
    assert "content does not match its hash" in broken.stderr
