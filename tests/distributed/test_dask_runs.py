"""The device shards on Dask distributed (DESIGN 8): a snapshot, a view or a file
computation run on a real cluster stores the same bytes as one run here, whatever the
shard count; a worker killed mid-task changes nothing; a cluster out of reach or lost
mid-run fails the run, which stores nothing."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import polars as pl
import pytest
from distributed import Client, LocalCluster
from hypothesis import given, settings
from sqlalchemy import Engine, text

from rewards.core.merkle import merkle_root, payout_leaves
from rewards.executors import DaskCluster
from rewards.services.computing import ComputePlan
from rewards.services.errors import ComputeUnavailable
from rewards.services.exports import ROW_FILES, export
from rewards.services.runs import recent_runs
from rewards.services.snapshot_runs import RunOutcome, Stages
from rewards.services.snapshots import stored_rows, stored_suppliers
from rewards.sim.fleet import FleetSpec, delivered_heartbeats, delivery_log
from tests.cli.test_eligibility_intervals import compute as compute_file
from tests.cli.test_eligibility_intervals import interval_inputs
from tests.compute.test_compute import gathered, sharded, whole
from tests.core.test_eligibility_properties import incident, meta, run
from tests.core.test_sharded import frames
from tests.distributed.conftest import dask_processes
from tests.distributed.plugins import KillOnce
from tests.processes import free_port
from tests.seeded import declare_forced_upgrade
from tests.services.test_snapshots import run as run_week

pytestmark = pytest.mark.xdist_group("dask")
DEVICES = 80  # the seeded fleet's


def snapshot(engine: Engine, plan: ComputePlan, **kw: object) -> RunOutcome:
    """A new version over the week, computed as `plan` says (test_snapshots' run)."""
    return run_week(engine, force=True, plan=plan, **kw)


def computed_on(engine: Engine, run_id: int) -> tuple[str, str | None, str | None]:
    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT status, computed_on, error FROM job_runs WHERE id = :id"), {"id": run_id}
        ).one()
    return found[0], found[1], found[2]


def same_snapshot(engine: Engine, here: RunOutcome, there: RunOutcome, tmp: Path) -> None:
    """The same rows, fingerprint, content hash, suppliers and root (for its version),
    and export files: the rows byte for byte, the suppliers but for their leaves' hashes
    (a leaf names its version)."""
    a, b = here.snapshot, there.snapshot
    assert (b.input_fingerprint, b.content_hash) == (a.input_fingerprint, a.content_hash)
    assert stored_rows(engine, b).equals(stored_rows(engine, a))
    suppliers = stored_suppliers(engine, b)
    assert suppliers.equals(stored_suppliers(engine, a))
    assert b.merkle_root == merkle_root(payout_leaves(suppliers, b.season, b.version))
    export(engine, a, tmp / "here")
    export(engine, b, tmp / "there")
    for name in ROW_FILES:
        assert (tmp / "here" / name).read_bytes() == (tmp / "there" / name).read_bytes()
    for name in ("suppliers.csv", "suppliers.parquet"):  # their leaves name the version
        read = pl.read_csv if name.endswith(".csv") else pl.read_parquet
        here_, there_ = (read(tmp / side / name).drop("leaf_hash") for side in ("here", "there"))
        assert there_.equals(here_)


@pytest.mark.parametrize("shard_devices", [DEVICES, DEVICES // 2, 12])  # 1, 2 and 7 shards
def test_a_snapshot_on_dask_is_the_snapshot_made_here(
    ingested: Engine, cluster: LocalCluster, shard_devices: int, tmp_path: Path
) -> None:
    declare_forced_upgrade(ingested)  # version-scoped: each shard derives its versions
    here = snapshot(ingested, ComputePlan(shard_devices=DEVICES))
    plan = ComputePlan(shard_devices=shard_devices, scheduler=cluster.scheduler_address)
    assert plan.shards(DEVICES) == {80: 1, 40: 2, 12: 7}[shard_devices]
    there = snapshot(ingested, plan)
    same_snapshot(ingested, here, there, tmp_path)
    assert computed_on(ingested, here.snapshot.job_run_id) == ("succeeded", "in process", None)
    on_dask = f"dask {cluster.scheduler_address} (2 workers)"
    assert computed_on(ingested, there.snapshot.job_run_id) == ("succeeded", on_dask, None)
    runs = {run.id: run for run in recent_runs(ingested, 10)}  # as `rewards runs` shows them
    assert runs[there.snapshot.job_run_id].computed_on == on_dask
    with ingested.connect() as connection:
        audited = connection.execute(
            text("SELECT details FROM audit_log WHERE subject = :s"),
            {"s": f"{there.snapshot.season}-v{there.snapshot.version}"},
        ).scalar_one()
    assert json.loads(audited)["computed_on"] == on_dask


@settings(max_examples=15, deadline=None)
@given(
    runs=st.lists(run, max_size=8),
    raw_incidents=st.lists(incident, max_size=3, unique_by=lambda i: i["incident_id"]),
    meta=meta,
    shards=st.sampled_from([1, 2, 7]),
)
def test_fleets_computed_on_dask_are_the_whole_fleets_results(  # type: ignore[no-untyped-def]
    cluster, runs, raw_incidents, meta, shards
) -> None:
    inputs = frames(runs, raw_incidents, meta)
    with tempfile.TemporaryDirectory() as tmp, DaskCluster(cluster) as on_dask:
        result = gathered(sharded(inputs, Path(tmp) / "season", shards, executor=on_dask))
    assert result.equals(whole(inputs))


def test_a_worker_killed_mid_task_changes_nothing(ingested: Engine, tmp_path: Path) -> None:
    """Dask runs the dead worker's task again on another: the snapshot is the same bytes."""
    here = snapshot(ingested, ComputePlan(shard_devices=DEVICES))
    marker = tmp_path / "killed"
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        dashboard_address=":0",
        memory_limit="3GiB",
        silence_logs=logging.CRITICAL,
    ) as local:
        with Client(local, set_as_default=False) as client:
            client.register_plugin(KillOnce(marker))
        there = snapshot(ingested, ComputePlan(shard_devices=12, scheduler=local.scheduler_address))
    assert marker.exists()  # a worker did die running a task
    same_snapshot(ingested, here, there, tmp_path)


def test_a_cluster_out_of_reach_fails_the_run_and_stores_nothing(
    ingested: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rewards.services.computing.CONNECT_TIMEOUT_S", 1.0)
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ComputeUnavailable, match=f"cannot reach the Dask scheduler at {nowhere}"):
        snapshot(ingested, ComputePlan(scheduler=nowhere))
    with ingested.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM snapshots")).scalar_one() == 0
        status, error = connection.execute(
            text("SELECT status, error FROM job_runs WHERE job_id LIKE 'snapshot:%'")
        ).one()
    assert status == "failed" and "cannot reach the Dask scheduler" in error


@pytest.mark.parametrize("dialect", ["postgresql"])  # the processes matter here, not the database
def test_scheduler_and_worker_processes_give_the_same_snapshot_and_a_lost_one_stores_nothing(
    ingested: Engine, tmp_path: Path
) -> None:
    """`dask scheduler` and `dask worker` as operators start them: the same snapshot; then
    the scheduler killed mid-run: the run fails with a clear error and stores nothing."""
    here = snapshot(ingested, ComputePlan(shard_devices=DEVICES))
    with dask_processes(tmp_path) as cluster:
        there = snapshot(ingested, ComputePlan(shard_devices=12, scheduler=cluster.address))
        same_snapshot(ingested, here, there, tmp_path)

        def kill_scheduler(progress: str) -> None:
            if cluster.scheduler.poll() is None:
                cluster.scheduler.kill()
                cluster.scheduler.wait()

        stages = Stages(on_progress=kill_scheduler)
        with pytest.raises(ComputeUnavailable, match="lost the Dask scheduler"):
            snapshot(
                ingested, ComputePlan(shard_devices=12, scheduler=cluster.address), stages=stages
            )
    with ingested.connect() as connection:
        versions = connection.execute(text("SELECT version FROM snapshots ORDER BY 1")).scalars()
        assert list(versions) == [here.snapshot.version, there.snapshot.version]
        last = connection.execute(
            text(
                "SELECT status, error FROM job_runs WHERE job_id LIKE 'snapshot:%' ORDER BY id DESC"
            )
        ).first()
    assert last is not None and last[0] == "failed" and "lost the Dask scheduler" in last[1]


def test_the_cli_computes_files_on_a_scheduler_process_the_same(tmp_path: Path) -> None:
    """`rewards eligibility compute --shards 3 --scheduler tcp://...` against `dask
    scheduler` and `dask worker` processes writes the same bytes as in its own process,
    and shows the shards' progress."""
    truth = delivered_heartbeats(delivery_log(FleetSpec(seed=4, devices=12, days=7)))
    inputs = (*interval_inputs(truth, tmp_path), "--shards", "3")
    code, err, here = compute_file(tmp_path, *inputs)
    assert code == 0, err
    (tmp_path / "logs").mkdir()
    with dask_processes(tmp_path / "logs") as cluster:
        code, err, there = compute_file(tmp_path, *inputs, "--scheduler", cluster.address)
    assert code == 0, err
    assert there is not None and there == here
    assert "assess: 3 of 3 shards" in err
