"""Issue 2's acceptance: a faulty april-2024 simulator, 1,200 devices, 7 days, ingested by
the real CLI over HTTP into each database, archives exactly what `sim dump` wrote, and the
exported intervals equal those computed from the dump; also after a kill -9 mid-ingest."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import text

from rewards.archive import HeartbeatArchive
from rewards.core import online_intervals
from rewards.db.engine import make_engine, unit_of_work
from rewards.db.heartbeats import load_heartbeats
from rewards.seasons import load_policy
from tests.processes import FLEET, REWARDS, Simulator, cli, cli_env, rewards

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory, season_dir: Path) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("dump") / "truth.parquet"
    env = cli_env("sqlite:///unused.db", "http://127.0.0.1:1", season_dir)
    done = cli("sim", "dump", *FLEET, "--bad-rate", "0.0002", "--out", str(out), env=env)
    assert done.returncode == 0, done.stderr
    return pl.read_parquet(out)


def check_against_dump(
    db_url: str, env: dict[str, str], dump: pl.DataFrame, season_dir: Path, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    with unit_of_work(engine) as session:
        stored = load_heartbeats(session.connection())
        runs = (
            session.connection()
            .execute(text("SELECT job_id, status, records_quarantined FROM job_runs ORDER BY id"))
            .all()
        )
    engine.dispose()
    assert stored.is_empty(), "by default the database keeps no raw heartbeat (DESIGN 8)"
    archived = HeartbeatArchive(env["REWARDS_ARCHIVE_URL"]).heartbeats()
    assert archived.equals(dump), "the archive's heartbeats differ from sim dump"
    exported = tmp_path / "intervals.parquet"
    done = cli("intervals", "export", "--out", str(exported), env=env)
    assert done.returncode == 0, done.stderr
    expected = online_intervals(dump, load_policy(season_dir / "e2e.toml"))
    assert pl.read_parquet(exported).equals(expected)  # with the edges bridges need
    assert runs[-1][:2] == ("ingest-heartbeats", "succeeded")


# One clean run on SQLite and one killed-and-rerun on PostgreSQL, each ending with the same
# exact check against the dump: both databases are checked end to end, and the suite stays
# well under ten minutes. (A pull failing mid-way is tested on both databases in
# tests/services/test_ingest.py, and a SIGKILL mid-write on both in test_snapshot_cli.py.)
@pytest.mark.parametrize("dialect", ["sqlite"])
def test_faulty_fleet_is_ingested_exactly(
    db_url: str, fleet_simulator: Simulator, season_dir: Path, dump: pl.DataFrame, tmp_path: Path
) -> None:
    env = cli_env(db_url, fleet_simulator.url, season_dir)
    done = rewards("ingest", "--once", env=env)
    assert done.returncode == 0, done.stderr
    assert "heartbeats:" in done.stdout and "caught up" in done.stdout
    check_against_dump(db_url, env, dump, season_dir, tmp_path)
    # a range rebuild from the archive changes nothing when nothing was lost
    ranged = cli("intervals", "rebuild", "--from", "2024-04-23", "--to", "2024-04-24", env=env)
    assert ranged.returncode == 0 and "of 2024-04-23 to 2024-04-24" in ranged.stdout, ranged.stderr
    check_against_dump(db_url, env, dump, season_dir, tmp_path)
    alone = cli("intervals", "rebuild", "--from", "2024-04-23", env=env)
    assert alone.returncode == 2 and "go together" in alone.stderr
    bad = cli("intervals", "rebuild", "--from", "2024-04-31", "--to", "2024-05-01", env=env)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    backwards = cli("intervals", "rebuild", "--from", "2024-04-24", "--to", "2024-04-23", env=env)
    assert backwards.returncode == 2 and "before it starts" in backwards.stderr


@pytest.mark.parametrize("dialect", ["postgresql"])
def test_a_kill_mid_ingest_then_a_rerun_loses_and_doubles_nothing(
    db_url: str,
    fleet_simulator: Simulator,
    season_dir: Path,
    dump: pl.DataFrame,
    tmp_path: Path,
) -> None:
    env = cli_env(
        db_url, fleet_simulator.url, season_dir, REWARDS_PAGE_SIZE="5000", REWARDS_JOB_LOCK_S="10"
    )
    process = subprocess.Popen(
        [*REWARDS, "ingest", "--once", "--stream", "heartbeats"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engine = make_engine(db_url)
    pages = 0  # the cursor is opaque: watch the pages committed (5,000 records each)
    deadline = time.monotonic() + 300
    while pages < 120 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        with unit_of_work(engine) as session:
            value = (
                session.connection()
                .execute(text("SELECT pages FROM ingest_cursors WHERE stream = 'heartbeats'"))
                .scalar()
            )
        pages = int(value or 0)
    assert process.poll() is None, "ingest finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    busy = cli("ingest", "--once", "--stream", "heartbeats", env=env)
    assert busy.returncode == 3 and "already running" in busy.stderr  # the dead holder's lease
    time.sleep(10.5)  # ... lapses after REWARDS_JOB_LOCK_S
    done = cli("ingest", "--once", env=env)
    assert done.returncode == 0, done.stderr
    with unit_of_work(engine) as session:
        statuses = (
            session.connection()
            .execute(
                text("SELECT status FROM job_runs WHERE job_id = 'ingest-heartbeats' ORDER BY id")
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert statuses == ["abandoned", "succeeded"]
    check_against_dump(db_url, env, dump, season_dir, tmp_path)


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_a_bounded_run_stops_after_max_pages_and_the_next_goes_on(
    db_url: str, fleet_simulator: Simulator, season_dir: Path
) -> None:
    env = cli_env(db_url, fleet_simulator.url, season_dir, REWARDS_PAGE_SIZE="5000")
    done = cli("ingest", "--once", "--stream", "heartbeats", "--max-pages", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert "heartbeats: 2 pages, 10,000 records" in done.stdout
    assert "stopped after --max-pages 2" in done.stdout
    again = cli("ingest", "--once", "--stream", "heartbeats", "--max-pages", "1", env=env)
    assert "heartbeats: 1 pages, 5,000 records" in again.stdout
    engine = make_engine(db_url)
    with unit_of_work(engine) as session:
        pages = (
            session.connection()
            .execute(text("SELECT pages FROM ingest_cursors WHERE stream = 'heartbeats'"))
            .scalar()
        )
    engine.dispose()
    assert pages == 3
    assert HeartbeatArchive(env["REWARDS_ARCHIVE_URL"]).archived_page("heartbeats") == 3
    refused = cli("ingest", "--once", "--max-pages", "0", env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
