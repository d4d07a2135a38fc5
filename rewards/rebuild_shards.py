"""Online intervals recomputed from the heartbeat archive (DESIGN 8), a UTC day at a
time, whole or by device shard: each shard's task reads the archive itself (a folder or
object storage, with the credentials of its own environment) and keeps the heartbeats of
its shard's devices, so the runner never holds the archive or the fleet's intervals.

Every task reads every day of the archive and keeps its own devices' heartbeats: the
archive is partitioned by day, not by device, so N shards read it N times. What it
saves is memory (a shard's carry, not the fleet's) and, on a cluster, time.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from rewards.archive import HeartbeatArchive
from rewards.core import INTERVALS, SeasonPolicy, device_shards, merge_intervals, to_us
from rewards.executors import Executor, in_groups


def rebuilt_intervals(
    archive: HeartbeatArchive,
    policy: SeasonPolicy,
    on_day: Callable[[date, int], None] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    within: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> Iterator[pl.DataFrame]:
    """The online intervals of every heartbeat in the archive under `policy` (DESIGN 4.2),
    computed a UTC day at a time so memory holds one day and the intervals still open at
    its end: yields batches of final intervals, in no particular order across batches.

    A heartbeat is in the partition of the day it was observed, however late it was
    delivered, so once day D is read no later heartbeat can reach an interval that ended
    more than a liveness timeout (plus a period) before D ends; the rest carry over and are
    merged with the next day by the same function that keeps intervals incrementally.
    With `start` or `end`, only the heartbeats observed in [start, end) count, and with
    `within`, only those it keeps of each day's.
    """
    carry = pl.DataFrame(schema=dict(INTERVALS))
    reach = policy.liveness_timeout_us + policy.heartbeat_period_us
    for day in archive.days():
        day_start = datetime.combine(day, datetime.min.time(), UTC)
        day_end = day_start + timedelta(days=1)
        if (start is not None and day_end <= start) or (end is not None and day_start >= end):
            continue
        low = day_start if start is None else max(day_start, start)
        beats = archive.heartbeats(low, day_end if end is None else min(day_end, end))
        if within is not None:
            beats = within(beats)
        merged = merge_intervals(carry, beats, policy)
        still_open = pl.col("end").dt.epoch("us") >= to_us(day_end) - reach
        final, carry = merged.filter(~still_open), merged.filter(still_open)
        if on_day is not None:
            on_day(day, beats.height)
        if final.height:
            yield final
    if carry.height:
        yield carry


@dataclass(frozen=True)
class RebuildJob:
    """What every shard's task needs (small): where the archive is, the policy, and the
    work folder its intervals go to."""

    archive_url: str
    policy: SeasonPolicy
    shards: int
    root: Path

    def folder(self, shard: int) -> Path:
        return self.root / f"shard={shard}"


def rebuild_by_shard(
    job: RebuildJob, executor: Executor, progress: Callable[[str], None] | None = None
) -> Iterator[pl.DataFrame]:
    """Every shard's intervals rebuilt from the archive by `executor`'s workers (each
    reading the archive itself), then yielded a shard's part at a time (INTERVALS)."""
    tasks = [(job, shard) for shard in range(job.shards)]
    for _ in in_groups(executor, _rebuild, tasks, progress or (lambda _: None), "rebuild"):
        pass
    for shard in range(job.shards):
        for part in sorted(job.folder(shard).glob("part-*.parquet")):
            yield pl.read_parquet(part)


def _rebuild(job: RebuildJob, shard: int) -> int:
    """Task: one shard's intervals from the archive into its folder (emptied first, so a
    task run again after its worker died writes each interval once); returns how many."""
    folder = job.folder(shard)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)

    def mine(beats: pl.DataFrame) -> pl.DataFrame:
        return beats.filter(device_shards(beats.get_column("device_id"), job.shards) == shard)

    rows = 0
    archive = HeartbeatArchive(job.archive_url)
    for number, batch in enumerate(rebuilt_intervals(archive, job.policy, within=mine)):
        batch.write_parquet(folder / f"part-{number:05d}.parquet")
        rows += batch.height
    return rows
