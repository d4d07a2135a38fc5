"""Beyond one machine (DESIGN 8): a season computed by device shard on a Dask
`distributed.LocalCluster` of this machine's cores, standing in for a cluster.

1. **Ten times the fleet** (`--devices`, default 6,000,000) at a real fleet's density
   (bench/fleet_intervals.py: about 2.5 intervals a device-day, the April forced upgrade),
   30 epochs. The workers make the fleet themselves, a block of devices per task, and
   write each block's intervals and metadata into the shards' folders: the driver never
   holds the fleet. Then the shards are computed on the cluster, each worker under a
   memory limit (`--worker-memory`) that one process computing the whole season could not
   meet (the whole core needs 15 GiB at 600,000 devices). Reported: time, each worker's
   and the driver's peak resident set, and the bytes that crossed between processes (task
   arguments and results, pickled).
2. **The overhead of distribution** at the real fleet (`--compare-devices`, 600,000):
   the same shards in this process, over a local process pool and on the cluster, each
   checked to give the same results, epoch by epoch, as a ratio to the in-process run.

    .venv/bin/python bench/dask_season.py [--devices 6000000] [--compare-devices 600000]

Results: bench/out/distributed.json. Work files go to --work (default bench/out/dist:
about 1.5 GB per million devices) and are removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import pickle
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
# this file's own folder goes last: first, as Python puts it, this file would be the
# `distributed` package it imports
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "bench"))

from distributed import Client, LocalCluster  # noqa: E402
from fleet_intervals import fleet_intervals  # noqa: E402

from bench.eligibility import POLICY, device_metadata, incidents_frame  # noqa: E402
from bench.memory import peak_rss_mib, reset_peak  # noqa: E402
from rewards.compute import SPILL, ShardedSeason, compute  # noqa: E402
from rewards.core import device_shards  # noqa: E402
from rewards.executors import DaskCluster, Executor, InProcess, ProcessPool  # noqa: E402

OUT = ROOT / "bench" / "out"
T = TypeVar("T")


def make_block(root: str, shards: int, block: int, first: int, count: int) -> int:
    """Task: devices `first`.. `first + count - 1` over the season, their intervals and
    metadata written into each shard's folder as this block's part; returns the rows."""
    intervals = fleet_intervals(POLICY, count, 1 + block, first)
    devices = device_metadata(first, count, seed=100_000 + block)
    for kind, frame in (("intervals", intervals), ("devices", devices)):
        placed = frame.with_columns(shard=device_shards(frame.get_column("device_id"), shards))
        for (shard,), part in placed.partition_by("shard", as_dict=True).items():
            folder = Path(root) / kind / f"shard={shard}"
            folder.mkdir(parents=True, exist_ok=True)
            part.drop("shard").write_parquet(
                folder / f"part-{block:05d}.parquet", compression=SPILL
            )
    return intervals.height


def paid_by_epoch(root: str, shards: int, shard: int) -> pl.DataFrame:
    """Task: one shard's rows, eligible rows and base units paid, per epoch."""
    season = ShardedSeason(Path(root), shards)
    rows = season.shard_results(shard, range(POLICY.epoch_count))
    return rows.group_by("epoch").agg(
        pl.len().alias("rows"), pl.col("eligible").sum(), pl.col("reward").sum()
    )


class Counted:
    """An executor that also counts the pickled bytes of every task's arguments and
    result: what crosses between the driver and the workers."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.tasks_at_once = inner.tasks_at_once
        self.sent = self.received = 0
        self.by_task: dict[str, int] = {}  # bytes of results, by task function

    def describe(self) -> str:
        return self.inner.describe()

    def map(self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]]) -> list[T]:
        self.sent += sum(len(pickle.dumps(task, protocol=5)) for task in tasks)
        results = self.inner.map(fn, tasks)
        size = sum(len(pickle.dumps(r, protocol=5)) for r in results)
        self.received += size
        self.by_task[fn.__name__] = self.by_task.get(fn.__name__, 0) + size
        return results


def make_fleet(run: Executor, root: Path, devices: int, shards: int, block: int) -> int:
    """The fleet's intervals and metadata split into `shards` under `root`, a task a
    block; returns the intervals made."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    tasks = [
        (str(root), shards, index, first, min(block, devices - first))
        for index, first in enumerate(range(0, devices, block))
    ]
    return sum(run.map(make_block, tasks))


def totals(run: Executor, root: Path, shards: int) -> pl.DataFrame:
    """Per epoch: rows, eligible rows and base units paid, summed over the shards."""
    parts = run.map(paid_by_epoch, [(str(root), shards, s) for s in range(shards)])
    return pl.concat(parts).group_by("epoch").agg(pl.all().sum()).sort("epoch")


def digest(season: ShardedSeason) -> str:
    """SHA-256 of the results, epoch by epoch in the global order (the driver holds one
    epoch of the fleet at a time)."""
    sha = hashlib.sha256()
    for frame in season.epochs(range(POLICY.epoch_count)):
        sha.update(frame.write_ipc(None).getvalue())
    return sha.hexdigest()


def timed_compute(season: ShardedSeason, run: Executor) -> float:
    started = time.perf_counter()
    compute(season, POLICY, incidents=incidents_frame(), executor=run)
    return round(time.perf_counter() - started, 1)


def worker_peaks(client: Client) -> list[float]:
    return sorted(client.run(peak_rss_mib).values())


def fleet_scale(args: argparse.Namespace, client: Client, cluster: LocalCluster) -> dict[str, Any]:
    """Part 1: the big fleet, made and computed on the cluster."""
    shards = -(-args.devices // args.shard_devices)
    root = args.work / f"fleet-{args.devices}"
    with DaskCluster(cluster) as dask:
        started = time.perf_counter()
        made = make_fleet(dask, root, args.devices, shards, args.block)
        made_s = round(time.perf_counter() - started, 1)
        print(f"made {made:,} intervals of {args.devices:,} devices in {made_s} s", flush=True)
        client.restart()  # the workers' peaks from here on are the computation's
        reset_peak()
        counted = Counted(dask)
        season = ShardedSeason(root, shards)
        compute_s = timed_compute(season, counted)
        print(f"computed {shards} shards in {compute_s} s", flush=True)
        peaks = worker_peaks(client)
        per_epoch = totals(dask, root, shards)
    paid = per_epoch.filter(pl.col("eligible") > 0)
    assert (paid.get_column("reward") == POLICY.pool_per_epoch).all(), per_epoch
    return {
        "devices": args.devices,
        "intervals": made,
        "intervals_per_device_day": round(made / args.devices / POLICY.epoch_count, 2),
        "device_epochs": int(per_epoch.get_column("rows").sum()),
        "eligible_device_epochs": int(per_epoch.get_column("eligible").sum()),
        "shards": shards,
        "make_s": made_s,
        "compute_s": compute_s,
        "worker_peak_rss_mib": peaks,
        "worker_memory_limit": args.worker_memory,
        "driver_peak_rss_mib": peak_rss_mib(),
        "bytes_to_workers": counted.sent,
        "bytes_from_workers": counted.received,
        "bytes_from_workers_by_task": counted.by_task,
        "epochs_paid_in_full": paid.height,
    }


def overhead(args: argparse.Namespace, cluster: LocalCluster) -> dict[str, Any]:
    """Part 2: the real fleet in this process, a process pool and the cluster."""
    devices = args.compare_devices
    shards = -(-devices // args.shard_devices)
    root = args.work / f"fleet-{devices}"
    with DaskCluster(cluster) as dask:
        make_fleet(dask, root, devices, shards, args.block)
    season = ShardedSeason(root, shards)
    seconds, digests = {}, {}
    with ProcessPool(args.workers) as pool, DaskCluster(cluster) as dask:
        for name, run in (("in_process", InProcess()), ("process_pool", pool), ("dask", dask)):
            seconds[name] = timed_compute(season, run)
            digests[name] = digest(season)
            print(f"{devices:,} devices, {name}: {seconds[name]} s", flush=True)
    assert len(set(digests.values())) == 1, digests  # the same results, whoever ran them
    return {
        "devices": devices,
        "shards": shards,
        "seconds": seconds,
        "dask_over_in_process": round(seconds["dask"] / seconds["in_process"], 2),
        "dask_over_process_pool": round(seconds["dask"] / seconds["process_pool"], 2),
        "results_sha256": digests["dask"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=6_000_000)
    parser.add_argument("--compare-devices", type=int, default=600_000)
    parser.add_argument("--shard-devices", type=int, default=37_500)
    parser.add_argument("--block", type=int, default=50_000, help="devices made per task")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory", default="3GiB", help="each worker's memory limit")
    parser.add_argument("--work", type=Path, default=OUT / "dist")
    parser.add_argument("--keep", action="store_true", help="keep the work files")
    parser.add_argument("--skip-fleet", action="store_true", help="only the overhead part")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    try:
        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                memory_limit=args.worker_memory,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            if not args.skip_fleet:
                report["fleet"] = fleet_scale(args, client, cluster)
            report["overhead"] = overhead(args, cluster)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "distributed.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
