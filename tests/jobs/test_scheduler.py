"""The scheduler: one leader runs the jobs, a standby takes over when the leader dies."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import create_engine, text

import jobs.scheduler as scheduler_module
from jobs.ingest import ARCHIVE_JOB_ID, JOB_IDS, OUTAGES_JOB_ID, RETENTION_JOB_ID
from jobs.scheduler import build_scheduler
from jobs.snapshots import SNAPSHOT_JOB_ID, VIEW_JOB_ID
from rewards.archive import HeartbeatArchive
from rewards.db.engine import make_engine, unit_of_work
from rewards.settings import get_settings
from rewards.sim.fleet import FleetSpec
from rewards.sim.server import BackgroundServer, UptimeSimulator, create_sim_app
from tests.builders import policy
from tests.processes import REWARDS, TOKEN, cli_env


def wait_for(condition: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_standby_takes_over_when_the_leader_is_killed(db_url: str, season_dir: Path) -> None:
    sim = UptimeSimulator(
        FleetSpec(seed=3, devices=20, days=2, heartbeat_period_s=600), token=TOKEN
    )
    engine = make_engine(db_url)

    def query(sql: str, **params: object) -> list[tuple[object, ...]]:
        with unit_of_work(engine) as session:
            return [tuple(r) for r in session.connection().execute(text(sql), params).all()]

    def leader() -> str | None:
        rows = query("SELECT holder FROM leases WHERE name = 'scheduler-leader'")
        return str(rows[0][0]) if rows else None

    def runs_by(process: subprocess.Popen[bytes], job: str = "%") -> int:
        return len(
            query(
                "SELECT id FROM job_runs WHERE holder LIKE :holder AND status = 'succeeded' "
                "AND job_id LIKE :job",
                holder=f"%:{process.pid}/%",
                job=job,
            )
        )

    with BackgroundServer(create_sim_app(sim)) as server:
        env = cli_env(
            db_url,
            server.url,
            season_dir,
            REWARDS_LEADER_LEASE_S="3",
            REWARDS_HEARTBEATS_EVERY_S="1",
            REWARDS_DEVICES_EVERY_S="1",
            # a job lock the killed leader held mid-run lapses soon (a live run renews it)
            REWARDS_JOB_LOCK_S="10",
        )

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [*REWARDS, "scheduler"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        first = start()
        try:
            wait_for(lambda: runs_by(first) >= 2, 30, "the first scheduler's job runs")
            assert leader() is not None and leader().endswith(f":{first.pid}")  # type: ignore[union-attr]
            second = start()
            try:
                time.sleep(3)
                assert runs_by(second) == 0 and leader().endswith(f":{first.pid}")  # type: ignore[union-attr]
                first.send_signal(signal.SIGKILL)
                first.wait()
                wait_for(lambda: runs_by(second) >= 1, 30, "the standby to take over")
                assert leader().endswith(f":{second.pid}")  # type: ignore[union-attr]
                # the first may have died mid-pull: the standby's own pull completes it
                wait_for(
                    lambda: runs_by(second, "ingest-heartbeats") >= 1, 45, "the standby's pull"
                )
                archived = HeartbeatArchive(env["REWARDS_ARCHIVE_URL"]).heartbeats().height
                assert archived == sim.heartbeats.unique(["device_id", "observed_us"]).height
            finally:
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=30) == 0
            assert leader() is None  # a clean stop hands the lease back at once
        finally:
            if first.poll() is None:
                first.kill()
    engine.dispose()


def test_every_job_is_registered_with_an_id_one_instance_coalesced_and_a_misfire_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    added: list[dict[str, object]] = []

    class Recording(BackgroundScheduler):
        def add_job(self, func: Callable[..., object], *args: Any, **options: Any) -> Job:
            added.append(options)
            return super().add_job(func, *args, **options)

    monkeypatch.setattr(scheduler_module, "BackgroundScheduler", Recording)
    scheduler = build_scheduler(create_engine("sqlite://"), get_settings(), policy())

    assert {job.id for job in scheduler.get_jobs()} == {
        *JOB_IDS.values(),
        ARCHIVE_JOB_ID,
        OUTAGES_JOB_ID,
        RETENTION_JOB_ID,
        SNAPSHOT_JOB_ID,
        VIEW_JOB_ID,
    }
    assert len(added) == len(scheduler.get_jobs())
    for options in added:
        assert options["id"], options
        assert options["replace_existing"] is True, options["id"]
        assert options["coalesce"] is True, options["id"]
        assert options["max_instances"] == 1, options["id"]
        grace = options["misfire_grace_time"]
        assert isinstance(grace, int) and grace > 0, options["id"]
