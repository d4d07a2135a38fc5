"""Intervals rebuilt from the archive by device shard (DESIGN 8): each shard's task reads
the archive itself, on a folder or on object storage, in local processes or on a Dask
cluster's workers; what is stored equals the intervals kept page by page, and after a
change of the liveness timeout what the rules give over every heartbeat."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from distributed import LocalCluster
from sqlalchemy import Engine

from rewards.archive import HeartbeatArchive
from rewards.core import online_intervals
from rewards.db.engine import unit_of_work
from rewards.db.interval_reads import load_intervals
from rewards.services.computing import ComputePlan
from rewards.services.intervals import rebuild_intervals
from rewards.sim.fleet import delivered_heartbeats
from rewards.sim.server import BackgroundServer, UptimeSimulator, create_sim_app
from tests.archive.test_ingest_archive import SPEC, P, pull
from tests.builders import policy


def stored(engine: Engine):  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as session:
        return load_intervals(session.connection())


@pytest.mark.parametrize("dialect", ["postgresql"])  # both databases: the test below
def test_a_rebuild_by_shard_on_dask_reads_the_archive_itself_and_equals_the_kept_intervals(
    engine: Engine, archive_url: str
) -> None:
    """On a folder and on the S3 server: the workers (started after the AWS environment is
    set, as production workers have their own) read the archive without the runner."""
    sim = UptimeSimulator(SPEC, token="secret")
    archive = HeartbeatArchive(archive_url)
    with BackgroundServer(create_sim_app(sim)) as server:
        assert pull(engine, server.url, archive).caught_up
    kept = stored(engine)
    told: list[str] = []
    with LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR
    ) as local:
        plan = ComputePlan(shard_devices=5, scheduler=local.scheduler_address)
        assert plan.shards(SPEC.devices) == 3
        count = rebuild_intervals(engine, archive, P, plan=plan, progress=told.append)
    assert count == kept.height
    assert stored(engine).equals(kept)
    assert told[-1] == "rebuild: 3 of 3 shards"


@pytest.mark.parametrize(
    ("dialect", "shard_devices"),
    [("sqlite", SPEC.devices), ("sqlite", 1), ("postgresql", 5)],  # 1, 12 and 3 shards
)
def test_a_rebuild_by_shard_after_a_new_liveness_timeout_is_what_the_rules_give(
    engine: Engine, tmp_path: Path, shard_devices: int
) -> None:
    sim = UptimeSimulator(SPEC, token="secret")
    archive = HeartbeatArchive(str(tmp_path / "archive"))
    with BackgroundServer(create_sim_app(sim)) as server:
        assert pull(engine, server.url, archive).caught_up
    longer = policy(liveness_timeout="30m")
    plan = ComputePlan(shard_devices=shard_devices, workers=2, work_dir=tmp_path)
    count = rebuild_intervals(engine, archive, longer, plan=plan)
    expected = online_intervals(delivered_heartbeats(sim.heartbeats), longer)
    assert count == expected.height
    assert stored(engine).equals(expected)
    assert list(tmp_path.iterdir()) == [tmp_path / "archive"]  # the work folder is gone
