"""The audit log is a hash chain: appends from anywhere chain in order, and an edited,
removed or added entry is found by `rewards audit verify` (both databases)."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, text
from sqlmodel import Session

from rewards.db import audit
from rewards.db import snapshots as store
from rewards.db.engine import make_engine, unit_of_work
from rewards.db.migrate import upgrade
from rewards.services.exports import export
from rewards.services.publication import publish
from rewards.services.snapshot_runs import run_snapshot
from rewards.services.snapshots import resolve
from tests.processes import cli
from tests.seeded import KEY, LOCK, POLICY
from tests.seeded import NOW as LATER

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
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}
    env["REWARDS_DATABASE_URL"] = db_url
    engine = make_engine(db_url)
    record(engine, 3)
    done = cli("audit", "verify", env=env)
    assert done.returncode == 0 and "3 entries" in done.stdout
    lift_append_only(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET details = '{\"i\": 9}' WHERE id > 0"))
    engine.dispose()
    broken = cli("audit", "verify", env=env)
    assert broken.returncode == 1
    assert "content does not match its hash" in broken.stderr


def _refused(engine: Engine, statement: str) -> None:
    with pytest.raises(sqlalchemy.exc.DBAPIError), engine.begin() as connection:
        connection.execute(text(statement))


def test_truncate_and_any_change_to_the_head_but_an_append_are_refused(engine: Engine) -> None:
    record(engine, 3)
    statements = [
        "UPDATE audit_head SET hash = '" + "0" * 64 + "', entries = 0",  # reset the head
        "UPDATE audit_head SET entries = entries - 1",
        "UPDATE audit_head SET entries = entries + 1",  # forward, but to no entry
        "UPDATE audit_head SET hash = (SELECT hash FROM audit_log ORDER BY id LIMIT 1)",
        "DELETE FROM audit_head",
        "INSERT INTO audit_head (id, hash, entries) VALUES (2, 'x', 0)",
    ]
    if engine.dialect.name == "postgresql":
        statements += ["TRUNCATE audit_log", "TRUNCATE audit_head", "TRUNCATE audit_log CASCADE"]
    for statement in statements:
        _refused(engine, statement)
    record(engine, 2)  # the append path still moves it
    report = verify(engine)
    assert (report.entries, report.problems) == (5, [])


def lift_every_guard(engine: Engine) -> None:
    """What an attacker with the database owner's rights would do: no trigger stays."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            for table in ("audit_log", "audit_head"):
                connection.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            names = connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name IN ('audit_log', 'audit_head')"
            ).scalars()
            for name in list(names):
                connection.exec_driver_sql(f"DROP TRIGGER {name}")


def test_a_truncated_or_rewound_log_is_caught_against_the_heads_snapshots_recorded(
    ingested: Engine, tmp_path: Path
) -> None:
    with ingested.connect() as connection:
        before = connection.execute(text("SELECT entries FROM audit_head")).scalar_one()
    record(ingested, 2)
    run_snapshot(
        ingested, POLICY, epochs=range(7), trigger="manual", triggered_by="admin@test",
        reason="t", clock=lambda: LATER, key=KEY, lock_ttl=LOCK,
    )  # fmt: skip
    publish(
        ingested, resolve(ingested, "v1", "ignition-s2"), by="admin@test",
        clock=lambda: LATER, lock_ttl=LOCK,
    )  # fmt: skip
    record(ingested, 1)
    snap = resolve(ingested, "v1", "ignition-s2")
    n = before + 2  # the head as the run wrote: the ingest's entries and the two recorded here
    # then the run's own entry (n + 1) and the publication's (n + 2)
    assert (snap.audit_entries, snap.published_audit_entries) == (n, n + 2)
    with ingested.connect() as connection:
        hashes = connection.execute(text("SELECT hash FROM audit_log ORDER BY id")).scalars().all()
    assert (snap.audit_hash, snap.published_audit_hash) == (hashes[n - 1], hashes[n + 1])
    manifest = export(ingested, snap, tmp_path / "export")
    assert manifest["audit_head"] == {"entries": n, "hash": hashes[n - 1]}
    assert manifest["published_audit_head"] == {"entries": n + 2, "hash": hashes[n + 1]}
    assert verify(ingested).intact
    for column in ("audit_hash", "audit_entries", "published_audit_hash"):  # frozen too
        _refused(ingested, f"UPDATE snapshots SET {column} = NULL")  # noqa: S608

    # delete the tail from the head the run recorded on, and rewind the head to fit
    lift_every_guard(ingested)
    with ingested.begin() as connection:
        ids = connection.execute(text("SELECT id FROM audit_log ORDER BY id")).scalars().all()
        connection.execute(text("DELETE FROM audit_log WHERE id >= :id"), {"id": ids[n - 1]})
        connection.execute(
            text("UPDATE audit_head SET hash = :h, entries = :n"), {"h": hashes[n - 2], "n": n - 1}
        )
    problems = verify(ingested).problems
    assert problems, "a rewound log passed"
    assert all("removed or added" not in p for p in problems)  # the head itself agrees
    assert any(f"ignition-s2-v1 (run) recorded the log's head at entry {n}" in p for p in problems)
    assert any(
        "ignition-s2-v1 (publication)" in p and "truncated or rewound" in p for p in problems
    )

    # empty the log and reset the head: once "intact: 0 entries"
    with ingested.begin() as connection:
        connection.execute(text("DELETE FROM audit_log"))
        connection.execute(
            text("UPDATE audit_head SET hash = :h, entries = 0"), {"h": audit.GENESIS}
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}
    env["REWARDS_DATABASE_URL"] = str(ingested.url.render_as_string(hide_password=False))
    done = cli("audit", "verify", env=env)
    assert done.returncode == 1, done.stdout
    assert "the log has only 0 entries: it was truncated or rewound" in done.stderr


@pytest.mark.parametrize("dialect", ["postgresql"])  # SQLite has one writer at a time anyway
def test_a_snapshot_run_holds_the_appenders_lock_only_for_its_own_entry(
    ingested: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a run bulk-writes a fleet's device-epochs, every other audited write (an admin
    confirming an incident, say) must still get through: on PostgreSQL the serving engine
    waits at most a few seconds for a lock."""
    writing, written = threading.Event(), threading.Event()
    original = store.insert

    def slow_insert(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)  # type: ignore[arg-type]
        writing.set()
        written.wait(30)  # the rest of a long bulk write

    monkeypatch.setattr(store, "insert", slow_insert)
    run = threading.Thread(
        target=run_snapshot,
        args=(ingested, POLICY),
        kwargs={
            "epochs": range(7), "trigger": "manual", "triggered_by": "admin.test",
            "reason": "t", "clock": lambda: LATER, "lock_ttl": LOCK, "key": KEY,
        },
    )  # fmt: skip
    run.start()
    try:
        assert writing.wait(60), "the run never reached its write"
        with ingested.connect() as connection, connection.begin():
            connection.exec_driver_sql("SET LOCAL lock_timeout = '1s'")
            with Session(bind=connection) as session:
                audit.append(
                    session, now=NOW, actor="admin.test", action="incident.confirm",
                    subject="inc-during-run", details={},
                )  # fmt: skip
    finally:
        written.set()
        run.join(60)
    assert verify(ingested).intact
