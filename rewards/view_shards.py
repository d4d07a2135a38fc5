"""The eligibility view's documents made shard by shard (DESIGN 6, 8), never the season's
rows at once.

A supplier's document holds all their device-epochs, and their devices lie in many device
shards. So the snapshot rows (`snapshot_rows_by_shard`, a range of devices per file) are
first split by owner bucket (the owner's Iceberg bucket, core/shards.py), then each owner
bucket is a task that gathers its rows from every range and renders and packs its owners' documents
(core/eligibility_view.py). The driver only reads the packed documents back, a bucket at a
time, to store them. The documents are those of the whole season's rows (tests/compute).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from rewards.compute import SPILL, ShardedSeason, runs, spill, unspill
from rewards.core import (
    PACKED_DEVICE_DOCUMENTS,
    PACKED_DOCUMENTS,
    SeasonPolicy,
    device_shards,
    empty,
    owner_slices,
    pack_devices,
    started_epochs,
    view_rows,
)
from rewards.executors import Executor, InProcess, in_groups

ROWS_PER_RENDER = 250_000  # view rows rendered at once (whole owners: a slice may hold more)


@dataclass(frozen=True)
class ViewJob:
    """What every view task needs besides its shard or bucket number (small)."""

    season: ShardedSeason
    policy: SeasonPolicy
    as_of_us: int


@dataclass(frozen=True)
class Documents:
    """The packed documents of a view, by owner bucket, and what they hold."""

    season: ShardedSeason
    rows: int
    owners: int

    def packed(self) -> Iterator[pl.DataFrame]:
        """PACKED_DOCUMENTS, an owner bucket at a time."""
        return self._read("documents")

    def packed_devices(self) -> Iterator[pl.DataFrame]:
        """PACKED_DEVICE_DOCUMENTS, an owner bucket at a time."""
        return self._read("device-documents")

    def _read(self, kind: str) -> Iterator[pl.DataFrame]:
        for bucket in range(self.season.shards):
            path = _documents(self.season, bucket, kind)
            if path.exists():
                yield unspill(path)


def view_documents(
    season: ShardedSeason,
    policy: SeasonPolicy,
    as_of_us: int,
    *,
    executor: Executor | None = None,
    progress: Callable[[str], None] | None = None,
) -> Documents:
    """Every owner's document of the view as of `as_of_us`, from the snapshot rows each
    shard has (after `snapshot_rows_by_shard`)."""
    run, tell = executor or InProcess(), progress or (lambda _stage: None)
    job = ViewJob(season, policy, as_of_us)
    ranges = [(job, path) for path in season.ordered_files()]
    for _ in in_groups(run, _by_owner, ranges, tell, "owners", "device ranges"):
        pass
    tasks = [(job, bucket) for bucket in range(season.shards)]
    rows = owners = 0
    for done in in_groups(run, _render, tasks, tell, "documents", "owner buckets"):
        rows += sum(r for r, _ in done)
        owners += sum(o for _, o in done)
    return Documents(season, rows, owners)


def _by_owner(job: ViewJob, path: Path) -> int:
    """Task: a device range's rows that have an owner, one file per owner bucket."""
    season = job.season
    owned = unspill(path).filter(pl.col("owner_id").is_not_null())
    buckets = device_shards(owned.get_column("owner_id"), season.shards)
    for bucket, part in runs(owned, buckets):
        folder = season.root / "view" / f"owner={bucket}"
        folder.mkdir(parents=True, exist_ok=True)
        spill(part, folder / path.name)
    return owned.height


def _render(job: ViewJob, bucket: int) -> tuple[int, int]:
    """Task: an owner bucket's documents rendered and packed into one file; returns its
    rows and owners."""
    season = job.season
    parts = sorted((season.root / "view" / f"owner={bucket}").glob(f"*{SPILL}"))
    if not parts:
        return 0, 0
    rows = view_rows(pl.concat([unspill(p) for p in parts]), job.policy, job.as_of_us)
    epochs, threads = len(started_epochs(job.policy, job.as_of_us)), _cores()
    packed = [
        pack_devices(some, job.policy, epochs, threads)
        for some in owner_slices(rows, ROWS_PER_RENDER)
    ]  # a slice's JSON at a time: the text is ~500 B a row, its compressed form ~80 B
    documents = pl.concat([p[0] for p in packed]) if packed else empty(PACKED_DOCUMENTS)
    devices = pl.concat([p[1] for p in packed]) if packed else empty(PACKED_DEVICE_DOCUMENTS)
    for kind, frame in (("documents", documents), ("device-documents", devices)):
        path = _documents(season, bucket, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path, compression="uncompressed")  # already compressed
    return rows.height, documents.height


def _cores() -> int:
    """The cores this process may use (its CPU affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _documents(season: ShardedSeason, bucket: int, kind: str) -> Path:
    return season.root / kind / f"owner={bucket}{SPILL}"
