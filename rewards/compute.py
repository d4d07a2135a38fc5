"""A season computed shard by shard in bounded memory (DESIGN 8).

The inputs are split once into Parquet files by device shard (Iceberg's bucket transform,
core/shards.py); each shard then goes through the unchanged pure core as a task that
reads its own files and writes its own results, and only small frames travel between the
tasks and the driver: per-epoch totals, remainder histograms and the few rows at each
epoch's cut-off (core/shard_allocation.py). The results land as one file per epoch and
shard, each sorted by device_id, so the global order (epoch, then device_id) is read back
one epoch at a time (`ShardedSeason.epochs`), never the whole season at once.

Who runs the tasks is an `Executor`: this process (`InProcess`, the default) or a pool of
local processes (`ProcessPool`); a distributed one only has to map a function over task
arguments the same way. Whatever runs them, the results are the same bytes as
`device_epochs` over the whole fleet (tests/compute).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import polars as pl

from rewards.core import (
    DEVICES,
    FINE_BUCKETS,
    INCIDENT_VERSIONS,
    INTERVALS,
    OWNERS,
    RESULTS,
    SeasonPolicy,
    add_histograms,
    add_totals,
    boundary_buckets,
    boundary_rows,
    cutoffs,
    device_shards,
    empty,
    remainder_histogram,
    shard_rewards,
    shard_totals,
    shares,
    snapshot_rows,
    unpaid_device_epochs,
)
from rewards.executors import Executor, InProcess, in_groups

# Files written and read back within one computation (the suffix of their names): LZ4
# Parquet. Arrow IPC with LZ4 writes a shard of 3.7M intervals faster (0.45 s against
# 1.26 s: nothing is encoded), but polars reads it on one core where it decodes Parquet
# on all: a season computed from IPC work files took longer in two runs out of two.
SPILL: Final = ".parquet"

# Rows gathered from the source before they are split into shard files: large enough that
# a fleet's season makes a few files per shard, small enough to stay well under a shard's
# own working memory.
ROWS_PER_PART = 4_000_000

# Devices whose snapshot rows are put in order together (about 0.6M rows at 30 epochs).
DEVICES_A_RANGE = 20_000

# The devices a split placed, and their shards (at the season's root).
PLACEMENT = f"placement{SPILL}"


def spill(frame: pl.DataFrame, path: Path, compression: Literal["lz4", "zstd"] = "lz4") -> None:
    """Write a work file (`SPILL`), read back by `unspill`; LZ4 unless the file is also
    kept beyond the run (the frozen inputs: rewards/frozen.py)."""
    frame.write_parquet(path, compression=compression)


def unspill(path: Path) -> pl.DataFrame:
    """A work file that `spill` wrote."""
    return pl.read_parquet(path)


@dataclass(frozen=True)
class ShardedSeason:
    """A season's inputs split by shard under `root`, and (once `compute` ran) its results."""

    root: Path
    shards: int

    def shard_dir(self, kind: str, shard: int) -> Path:
        return self.root / kind / f"shard={shard}"

    def read(self, kind: str, shard: int, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """One shard's `kind` frame (its part files in order), empty when it has none."""
        parts = sorted(self.shard_dir(kind, shard).glob(f"*{SPILL}"))
        if not parts:
            return empty(schema)
        return pl.concat([unspill(p) for p in parts])

    def epoch(self, epoch: int) -> pl.DataFrame:
        """RESULTS of one epoch, every shard's, sorted by device_id."""
        folder = f"epoch={epoch}"
        rows = [unspill(p) for p in sorted((self.root / "results" / folder).glob("*"))]
        if not rows:
            return empty(RESULTS)
        paid = sorted((self.root / "rewards" / folder).glob("*"))
        return _with_rewards(pl.concat(rows).sort("device_id"), paid)

    def epochs(self, epochs: range) -> Iterator[pl.DataFrame]:
        """RESULTS in the global order, an epoch at a time."""
        for epoch in epochs:
            yield self.epoch(epoch)

    def shard_results(self, shard: int, epochs: range) -> pl.DataFrame:
        """RESULTS of one shard's devices in `epochs`, with their rewards, sorted by epoch
        then device_id (as `device_epochs` orders them)."""
        frames = []
        for epoch in epochs:
            folder = f"epoch={epoch}/shard={shard}{SPILL}"
            rows, paid = self.root / "results" / folder, self.root / "rewards" / folder
            if rows.exists():
                found = [paid] if paid.exists() else []
                frames.append(_with_rewards(unspill(rows), found))
        return pl.concat(frames) if frames else empty(RESULTS)

    def ordered_files(self) -> list[Path]:
        """The snapshot rows (`snapshot_rows_by_shard`) in the canonical order (device_id,
        then epoch): one file per range of device ids, the ranges in order."""
        found = (self.root / "ordered").glob(f"range=*{SPILL}")
        return sorted(found, key=lambda p: int(p.stem.split("=")[1]))

    def rows_in_order(self) -> Iterator[pl.DataFrame]:
        """The snapshot rows in the canonical order, a device range at a time."""
        for path in self.ordered_files():
            yield unspill(path)

    def device_ids(self) -> pl.Series:
        """Every device the split placed (sorted)."""
        return unspill(self.root / PLACEMENT).get_column("device_id").sort()


def _with_rewards(rows: pl.DataFrame, rewards: list[Path]) -> pl.DataFrame:
    """RESULTS: `rows` (one epoch's) with their rewards from the `rewards` files; a row
    without one was not eligible, or its epoch paid nothing, and gets 0."""
    if rewards:
        paid = pl.concat([unspill(p) for p in rewards]).drop("epoch")
        rows = rows.join(paid, on="device_id", how="left", maintain_order="left")
    else:
        rows = rows.with_columns(reward=pl.lit(None, pl.Int64()))
    return rows.with_columns(pl.col("reward").fill_null(0)).select(list(RESULTS))


def split_inputs(
    root: Path,
    shards: int,
    intervals: pl.LazyFrame | Iterable[pl.DataFrame],
    *,
    devices: pl.LazyFrame | None = None,
    incident_versions: pl.LazyFrame | None = None,
    owners: pl.LazyFrame | None = None,
    near: pl.LazyFrame | None = None,
    rows_per_part: int = ROWS_PER_PART,
) -> ShardedSeason:
    """Split the inputs into Parquet files by device shard under `root` (emptied first),
    reading `intervals` (a lazy frame, or frames as a database read yields them) in
    batches: memory is a batch and the device list, not the season. Rows keep their order
    within a shard. An owner's row, or a heartbeat `near` an incident, whose device has
    neither intervals, metadata nor incident versions is dropped: no result names it."""
    if not 1 <= shards <= FINE_BUCKETS:
        raise ValueError(f"shards must be from 1 to {FINE_BUCKETS}, got {shards}")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    season = ShardedSeason(root, shards)
    placement = Placement(shards)
    sources = {"intervals": intervals, "devices": devices, "versions": incident_versions}
    for kind, source in sources.items():
        if source is not None:
            _split(season, kind, _batches(source), placement.of, rows_per_part)
    for kind, source in {"owners": owners, "near": near}.items():
        if source is not None:
            _split(season, kind, _batches(source), placement.known, rows_per_part)
    spill(placement.table, root / PLACEMENT)
    return season


def _batches(source: pl.LazyFrame | Iterable[pl.DataFrame]) -> Iterable[pl.DataFrame]:
    return source.collect_batches() if isinstance(source, pl.LazyFrame) else source


class Placement:
    """Each device's shard, hashed once per device as the rows arrive."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.table = pl.DataFrame(schema={"device_id": pl.String(), "shard": pl.UInt32()})

    def of(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` with each row's shard (a column `shard`), new devices placed."""
        ids = frame.select(pl.col("device_id").unique())
        new = ids.join(self.table, on="device_id", how="anti")
        if new.height:
            placed = new.with_columns(shard=device_shards(new.get_column("device_id"), self.shards))
            self.table = pl.concat([self.table, placed])
        return self.known(frame)

    def known(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame`'s rows of devices already placed, with their shard. Only the ids are
        joined: a join of the whole frame gathered every column of every row once more."""
        shard = (
            frame.select("device_id")
            .join(self.table, on="device_id", how="left", maintain_order="left")
            .get_column("shard")
        )
        placed = frame.with_columns(shard=shard)
        return placed if shard.null_count() == 0 else placed.filter(pl.col("shard").is_not_null())


def _split(
    season: ShardedSeason,
    kind: str,
    source: Iterable[pl.DataFrame],
    place: Callable[[pl.DataFrame], pl.DataFrame],
    rows: int,
) -> None:
    """`source` into `kind`/shard=K/part-NNNNN files, `rows` rows gathered at a
    time, each row where `place` puts it (a frame's rows with a `shard` column)."""
    pending: list[pl.DataFrame] = []
    count, part = 0, 0

    def flush() -> None:
        nonlocal count, part
        if not pending:
            return
        batch = place(pl.concat(pending))
        for shard, frame in runs(batch.drop("shard"), batch.get_column("shard")):
            folder = season.shard_dir(kind, shard)
            folder.mkdir(parents=True, exist_ok=True)
            spill(frame, folder / f"part-{part:05d}{SPILL}")
        pending.clear()
        count, part = 0, part + 1

    for batch in source:
        pending.append(batch)
        count += batch.height
        if count >= rows:
            flush()
    flush()


def runs(frame: pl.DataFrame, keys: pl.Series) -> Iterator[tuple[int, pl.DataFrame]]:
    """`frame`'s rows by their `keys` (integers, one per row): (key, its rows in their
    order) for each distinct key. Sorted keys cut the frame into slices, which copy
    nothing; others are partitioned."""
    if keys.is_sorted():
        found = keys.rle()
        offset = 0
        for key, length in zip(found.struct.field("value"), found.struct.field("len"), strict=True):
            yield int(key), frame.slice(offset, length)
            offset += length
        return
    parts = frame.with_columns(keys.alias("__key")).partition_by("__key", as_dict=True)
    for (key,), part in parts.items():
        yield int(key), part.drop("__key")


@dataclass(frozen=True)
class Job:
    """What every task of one computation needs besides its shard number (small)."""

    season: ShardedSeason
    policy: SeasonPolicy
    incidents: pl.DataFrame | None


def compute(
    season: ShardedSeason,
    policy: SeasonPolicy,
    *,
    incidents: pl.DataFrame | None = None,
    executor: Executor | None = None,
    progress: Callable[[str], None] | None = None,
) -> ShardedSeason:
    """Compute every shard's RESULTS into `season` (DESIGN 4 and 4.8 over all shards)."""
    run = executor or InProcess()
    job = Job(season, policy, incidents)
    tell = progress or (lambda _stage: None)
    shards = [(job, shard) for shard in range(season.shards)]
    totals = add_totals(
        [t for done in in_groups(run, _assess, shards, tell, "assess") for t in done]
    )
    pool = policy.pool_per_epoch
    # the histograms are added up as they come: the driver holds one, not one a shard
    summed: list[pl.DataFrame] = []
    for done in in_groups(run, _histogram, [(*s, totals) for s in shards], tell, "histograms"):
        summed = [add_histograms([*summed, *done])]
    boundaries = boundary_buckets(summed, pool)
    edges = [r for done in in_groups(run, _boundary, [(*s, boundaries) for s in shards], tell,
             "cut-offs") for r in done]  # fmt: skip
    cut = cutoffs(edges, boundaries)
    for _ in in_groups(run, _rewards, [(*s, totals, cut) for s in shards], tell, "rewards"):
        pass
    return season


def snapshot_rows_by_shard(
    season: ShardedSeason,
    policy: SeasonPolicy,
    epochs: range,
    *,
    executor: Executor | None = None,
    progress: Callable[[str], None] | None = None,
    devices_a_range: int = DEVICES_A_RANGE,
) -> ShardedSeason:
    """Each shard's snapshot rows (`snapshot_rows`: owners attached) into `season`, after
    `compute`, then put in the canonical order (device_id, then epoch) one range of
    `devices_a_range` device ids at a time, each range a task: read them with
    `rows_in_order`. Memory is a shard's rows, or a range's, never the season's."""
    run, tell = executor or InProcess(), progress or (lambda _stage: None)
    job = Job(season, policy, None)
    ids = season.device_ids()
    edges = ids.gather(list(range(devices_a_range, ids.len(), devices_a_range))).to_list()
    tasks = [(job, shard, epochs, edges) for shard in range(season.shards)]
    for _ in in_groups(run, _rows, tasks, tell, "rows"):
        pass
    ranges = [(job, r) for r in range(len(edges) + 1)]
    for _ in in_groups(run, _order, ranges, tell, "order", "device ranges"):
        pass
    return season


def _rows(job: Job, shard: int, epochs: range, edges: list[str]) -> int:
    """Task: a shard's snapshot rows, one file per range of device ids (split at `edges`)."""
    season = job.season
    rows = snapshot_rows(
        season.shard_results(shard, epochs),
        season.read("owners", shard, dict(OWNERS)),
        epochs=epochs,
        epoch_length_us=job.policy.epoch_length_us,
    )
    where = pl.Series(edges, dtype=pl.String).search_sorted(rows.get_column("device_id"), "right")
    for index, part in runs(rows, where):  # the rows are in device order: so are the ranges
        folder = season.root / "rows" / f"range={index}"
        folder.mkdir(parents=True, exist_ok=True)
        spill(part, folder / f"shard={shard}{SPILL}")
    return rows.height


def _order(job: Job, index: int) -> int:
    """Task: one range's rows from every shard in the canonical order, in one file."""
    root = job.season.root
    parts = sorted((root / "rows" / f"range={index}").glob(f"*{SPILL}"))
    if not parts:
        return 0
    # each part is sorted by device_id then epoch and no device is in two parts (a device
    # is in one shard), so a stable sort by device_id alone keeps each device's epochs in
    # order, in a third of the time of a sort by both keys
    rows = pl.concat([unspill(p) for p in parts]).sort("device_id", maintain_order=True)
    (root / "ordered").mkdir(exist_ok=True)
    spill(rows, root / "ordered" / f"range={index}{SPILL}")
    return rows.height


def _assess(job: Job, shard: int) -> pl.DataFrame:
    """Task: a shard through the core up to its weights; writes its unpaid results and
    weights, returns its per-epoch totals."""
    season = job.season
    intervals = season.read("intervals", shard, dict(INTERVALS))
    devices = season.read("devices", shard, dict(DEVICES))
    versions = season.read("versions", shard, dict(INCIDENT_VERSIONS))
    unpaid, weights = unpaid_device_epochs(
        intervals,
        job.policy,
        incidents=job.incidents,
        devices=devices,
        incident_versions=versions,
    )
    del intervals
    _by_epoch(season, "results", shard, unpaid.drop("reward"))
    folder = season.shard_dir("weights", shard)
    folder.mkdir(parents=True, exist_ok=True)
    spill(weights, folder / f"part-00000{SPILL}")
    return shard_totals(weights)


def _by_epoch(season: ShardedSeason, kind: str, shard: int, frame: pl.DataFrame) -> None:
    """`frame` written one file per epoch (`kind`/epoch=E/shard=K), its order kept."""
    for epoch, part in runs(frame, frame.get_column("epoch")):
        folder = season.root / kind / f"epoch={epoch}"
        folder.mkdir(parents=True, exist_ok=True)
        spill(part, folder / f"shard={shard}{SPILL}")


_WEIGHTS: dict[str, pl.DataType] = {
    "epoch": pl.Int64(),
    "device_id": pl.String(),
    "weight": pl.Int128(),
}
_SHARES: dict[str, pl.DataType] = {
    "epoch": pl.Int64(),
    "device_id": pl.String(),
    "floor": pl.Int64(),
    "remainder": pl.Int128(),
    "bucket": pl.Int64(),
}


def _weights(season: ShardedSeason, shard: int) -> pl.DataFrame:
    return season.read("weights", shard, _WEIGHTS)


def _shares(season: ShardedSeason, shard: int) -> pl.DataFrame:
    return season.read("shares", shard, _SHARES)


def _histogram(job: Job, shard: int, totals: pl.DataFrame) -> pl.DataFrame:
    """Task: a shard's floors and remainders (kept for the next steps) and their
    histogram per epoch."""
    shared = shares(_weights(job.season, shard), totals, job.policy.pool_per_epoch)
    folder = job.season.shard_dir("shares", shard)
    folder.mkdir(parents=True, exist_ok=True)
    spill(shared, folder / f"part-00000{SPILL}")
    return remainder_histogram(shared)


def _boundary(job: Job, shard: int, edges: pl.DataFrame) -> pl.DataFrame:
    return boundary_rows(_shares(job.season, shard), edges)


def _rewards(job: Job, shard: int, totals: pl.DataFrame, cut: pl.DataFrame) -> int:
    """Task: a shard's rewards, written one file per epoch; returns the rows paid."""
    season = job.season
    paid = shard_rewards(_weights(season, shard), _shares(season, shard), totals, cut)
    _by_epoch(season, "rewards", shard, paid)
    return paid.height
