"""Issue 14's property: whatever the page size (so, the batches) and wherever the process
dies, once or several times (after a page's archive write and before its database
transaction, or inside that transaction), the rerun leaves the same archive, the same
heartbeats and the same intervals as a fault-free pull; on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards.archive import HeartbeatArchive
from rewards.core import online_intervals
from rewards.db.engine import make_engine, unit_of_work
from rewards.db.heartbeats import load_heartbeats
from rewards.db.interval_reads import load_intervals
from rewards.services.ingest import pull_stream
from rewards.sim.fleet import FleetSpec, delivered_heartbeats
from rewards.sim.server import BackgroundServer, UptimeSimulator, create_sim_app
from rewards.uptime.client import UptimeClient
from tests.archive.test_ingest_archive import FAST, NOW, Crash, P, crash_once
from tests.conftest import Databases

SPEC = FleetSpec(seed=5, devices=8, days=1, duplicate_rate=0.05, conflict_rate=0.02, late_rate=0.1)
SIM = UptimeSimulator(SPEC, token="secret")
TRUTH = delivered_heartbeats(SIM.heartbeats)
crash = st.tuples(st.sampled_from(["before-commit", "mid-commit"]), st.integers(1, 8))


@pytest.fixture(scope="module")
def served() -> Iterator[object]:
    with BackgroundServer(create_sim_app(SIM)) as server:
        yield server


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(page_size=st.sampled_from([250, 1000, 3000]), crashes=st.lists(crash, max_size=3))
def test_any_batches_and_crash_points_give_the_fault_free_result(
    databases: Databases,
    dialect: str,
    served: object,
    page_size: int,
    crashes: list[tuple[str, int]],
) -> None:
    engine = make_engine(databases.fresh(dialect))
    with tempfile.TemporaryDirectory() as folder:
        archive = HeartbeatArchive(str(Path(folder) / "archive"))

        def pull() -> bool:
            with UptimeClient(served.url, "secret", retry=FAST) as client:  # type: ignore[attr-defined]
                report = pull_stream(
                    engine=engine,
                    client=client,
                    stream="heartbeats",
                    policy=P,
                    page_size=page_size,
                    max_skew=timedelta(minutes=5),
                    clock=lambda: NOW,
                    archive=archive,
                )
            return report.caught_up and report.error is None

        for where, at_call in crashes:
            with pytest.MonkeyPatch.context() as patched:
                crash_once(patched, where, at_call)
                with contextlib.suppress(Crash):  # the pull may end before the crash point
                    pull()
        assert pull()
        with unit_of_work(engine) as session:
            stored = load_heartbeats(session.connection())
            intervals = load_intervals(session.connection())
        assert stored.equals(TRUTH)
        assert intervals.equals(online_intervals(TRUTH, P))
        assert archive.heartbeats().equals(TRUTH)
        raw = archive.scan().collect()
        assert raw.height == SIM.heartbeats.filter(SIM.heartbeats["raw"].is_null()).height
    engine.dispose()
