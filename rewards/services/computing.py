"""How a run computes a season's rows: by device shard (DESIGN 8), in this process or over
local worker processes, with its work files in a temporary folder that goes with it.

Whatever the plan, the rows are the same bytes (tests/compute, tests/services); the plan
only sets how much memory a shard takes and how many cores work at once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from sqlalchemy import Engine
from sqlmodel import Session

from rewards.archive import HeartbeatArchive
from rewards.compute import ShardedSeason, compute, snapshot_rows_by_shard, split_inputs
from rewards.core import SeasonPolicy, input_window, season_incidents
from rewards.db.engine import consistent_read
from rewards.db.incidents import devices_frame, incidents, incidents_frame, owners_frame
from rewards.db.interval_reads import interval_batches, interval_devices
from rewards.executors import ClusterError, DaskCluster, Executor, InProcess, ProcessPool
from rewards.frozen import freeze
from rewards.services.errors import ComputeUnavailable
from rewards.services.versions import heartbeats_near

if TYPE_CHECKING:
    from rewards.settings import Settings


# how long a run waits for a Dask scheduler to answer, and for its first worker
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ComputePlan:
    """Devices per shard (a shard of 37,500 devices at a real fleet's density takes about
    0.9 GiB) and who runs the shards: a Dask scheduler (`tcp://host:port`) when given, else
    `workers` local processes (0: one after the other here). `work_dir` is where a run's
    work folder goes (default: the system's temporary folder); a cluster's workers must
    see it at the same path."""

    shard_devices: int = 50_000
    workers: int = 0
    scheduler: str | None = None
    work_dir: Path | None = None

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
        """Whoever runs the shards. A cluster out of reach, at the start or mid-run, is
        ComputeUnavailable (the run fails as a whole)."""
        if self.scheduler:
            try:
                with DaskCluster(self.scheduler, connect_timeout_s=CONNECT_TIMEOUT_S) as cluster:
                    yield cluster
            except ClusterError as exc:
                raise ComputeUnavailable(str(exc)) from exc
        elif self.workers:
            with ProcessPool(self.workers) as pool:
                yield pool
        else:
            yield InProcess()

    @contextmanager
    def work(self, prefix: str) -> Iterator[Path]:
        """A fresh work folder for one run, removed with everything in it afterwards."""
        with tempfile.TemporaryDirectory(prefix=prefix, dir=self.work_dir) as work:
            yield Path(work)


def plan_of(settings: Settings) -> ComputePlan:
    """The plan the settings give: shard_devices, compute_scheduler, else compute_workers,
    and compute_work_dir."""
    return ComputePlan(
        settings.shard_devices,
        settings.compute_workers,
        settings.compute_scheduler,
        settings.compute_work_dir,
    )


@dataclass(frozen=True)
class ShardedInputs:
    """A run's inputs as one consistent read left them: the intervals, device metadata,
    owners and the heartbeats near version-scoped incidents split into shard files under
    `season`; the small frames also whole. `freeze` completes them."""

    season: ShardedSeason
    incidents: pl.DataFrame  # confirmed
    devices: pl.DataFrame
    owners: pl.DataFrame


def season_confirmed(
    session: Session, policy: SeasonPolicy
) -> tuple[pl.DataFrame, tuple[int, int]]:
    """The confirmed incidents that can credit the season's time, and the window (lo, hi)
    of the stored intervals its results depend on (core/season_window.py): a database
    holds every season's intervals, and a season reads only its own."""
    confirmed = season_incidents(incidents_frame(incidents(session, "confirmed")), policy)
    return confirmed, input_window(policy, confirmed)


def read_by_shard(
    engine: Engine,
    policy: SeasonPolicy,
    root: Path,
    plan: ComputePlan,
    archive: HeartbeatArchive | None = None,
) -> ShardedInputs:
    """Read the inputs as of one moment (a concurrent ingest is wholly in or wholly out),
    streaming the stored intervals straight into shard files under `root`: the season's
    intervals are never held whole."""
    with consistent_read(engine) as (connection, session):
        confirmed, window = season_confirmed(session, policy)
        near = heartbeats_near(connection, confirmed, policy, archive)
        devices, owners = devices_frame(session), owners_frame(session)
        season = split_inputs(
            root,
            plan.shards(max(interval_devices(connection), devices["device_id"].n_unique())),
            interval_batches(connection, window),
            devices=devices.lazy(),
            owners=owners.lazy(),
            near=near.lazy(),
        )
    return ShardedInputs(season, confirmed, devices, owners)


def fingerprint_by_shard(
    inputs: ShardedInputs,
    policy: SeasonPolicy,
    executor: Executor,
    progress: Callable[[str], None] | None = None,
) -> str:
    """The inputs' fingerprint (the same as of the whole frames); derives each shard's
    incident versions on the way."""
    return freeze(
        inputs.season,
        policy,
        incidents=inputs.incidents,
        devices=inputs.devices,
        owners=inputs.owners,
        executor=executor,
        progress=progress,
    )


def rows_by_shard(
    inputs: ShardedInputs,
    policy: SeasonPolicy,
    epochs: range,
    executor: Executor,
    progress: Callable[[str], None] | None = None,
) -> ShardedSeason:
    """The snapshot rows of `epochs` computed shard by shard (after
    `fingerprint_by_shard`); read them in the canonical order with `rows_in_order()`."""
    compute(inputs.season, policy, incidents=inputs.incidents, executor=executor, progress=progress)
    return snapshot_rows_by_shard(
        inputs.season, policy, epochs, executor=executor, progress=progress
    )
