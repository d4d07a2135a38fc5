"""How a run computes a season's rows: by device shard (DESIGN 8), in this process or over
local worker processes, with its work files in a temporary folder that goes with it.

Whatever the plan, the rows are the same bytes (tests/compute, tests/services); the plan
only sets how much memory a shard takes and how many cores work at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from rewards.compute import (
    Executor,
    InProcess,
    ProcessPool,
    ShardedSeason,
    compute,
    snapshot_rows_by_shard,
    split_inputs,
)
from rewards.core import SeasonPolicy


@dataclass(frozen=True)
class ComputePlan:
    """Devices per shard (a shard of 37,500 devices at a real fleet's density takes about
    0.9 GiB) and local worker processes (0: the shards run one after the other here)."""

    shard_devices: int = 50_000
    workers: int = 0

    def __post_init__(self) -> None:
        if self.shard_devices < 1 or self.workers < 0:
            raise ValueError(
                f"shard_devices must be at least 1 and workers at least 0, "
                f"got {self.shard_devices} and {self.workers}"
            )

    def shards(self, devices: int) -> int:
        return max(1, -(-devices // self.shard_devices))

    @contextmanager
    def executor(self) -> Iterator[Executor]:
        if not self.workers:
            yield InProcess()
            return
        with ProcessPool(self.workers) as pool:
            yield pool


def rows_by_shard(
    root: Path,
    policy: SeasonPolicy,
    epochs: range,
    *,
    intervals: pl.DataFrame,
    incidents: pl.DataFrame,
    versions: pl.DataFrame,
    devices: pl.DataFrame,
    owners: pl.DataFrame,
    plan: ComputePlan,
) -> ShardedSeason:
    """The snapshot rows of `epochs` computed shard by shard under `root`; read them in
    the canonical order with `rows_in_order()`."""
    known = pl.concat([intervals.get_column("device_id"), devices.get_column("device_id")])
    season = split_inputs(
        root,
        plan.shards(known.n_unique()),
        intervals.lazy(),
        devices=devices.lazy(),
        incident_versions=versions.lazy(),
        owners=owners.lazy(),
    )
    with plan.executor() as executor:
        compute(season, policy, incidents=incidents, executor=executor)
        snapshot_rows_by_shard(season, policy, epochs, executor=executor)
    return season
