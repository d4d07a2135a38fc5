"""Use cases over stored online intervals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine

from rewards.archive import HeartbeatArchive
from rewards.core import (
    INTERVALS,
    SeasonPolicy,
    counts_from_tallies,
    from_us,
    to_us,
)
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import (
    delete_intervals,
    insert_intervals,
    prune_heartbeats,
    settle_open_intervals,
    take_intervals_overlapping,
)
from rewards.db.interval_reads import interval_devices, interval_tallies, load_intervals
from rewards.rebuild_shards import RebuildJob, rebuild_by_shard, rebuilt_intervals
from rewards.services.computing import ComputePlan
from rewards.services.errors import ServiceError
from rewards.services.files import write_parquet


def stored_intervals(engine: Engine) -> pl.DataFrame:
    """Every stored online interval (INTERVALS frame), sorted by device and start."""
    with unit_of_work(engine) as session:
        return load_intervals(session.connection())


def export_intervals(engine: Engine, path: Path) -> int:
    """Write every stored interval to Parquet (INTERVALS: device_id, start, end and the
    boot and agent version at each edge, which bridges need), as `rewards eligibility
    compute --intervals` reads it; returns the count."""
    intervals = stored_intervals(engine).select(list(INTERVALS))
    write_parquet(intervals, path)
    return intervals.height


def rebuild_intervals(
    engine: Engine,
    archive: HeartbeatArchive,
    policy: SeasonPolicy,
    days: tuple[date, date] | None = None,
    on_day: Callable[[date, int], None] | None = None,
    plan: ComputePlan | None = None,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Replace every stored online interval with those the archive's heartbeats give
    under `policy` (after a change of liveness_timeout, or to recover), in one
    transaction: readers see the old intervals or the new, never a mix. Returns how
    many intervals are stored (in `days`' range, when given).

    With `days` (first, last: UTC days, both included) only the intervals there are
    replaced, under the same liveness timeout the others were kept with (to recover a
    range; a changed timeout needs everything rebuilt). The range widens to whole stored
    intervals: every interval within a liveness timeout of it is taken out and recomputed
    from all the heartbeats it spans, so nothing outside the range changes.

    With a `plan` (a whole rebuild only) the intervals are recomputed by device shard
    first, by the plan's workers reading the archive themselves (`progress` tells the
    shards done), and then stored in one transaction."""
    if plan is not None and days is None:
        return _rebuild_by_shard(engine, archive, policy, plan, progress)
    with unit_of_work(engine) as session:
        connection = session.connection()
        start = end = within = None
        if days is None:
            delete_intervals(connection)
        else:
            start, end, within = _widened(connection, days, policy)
        stored = 0
        for batch in rebuilt_intervals(archive, policy, on_day, start, end, within):
            insert_intervals(connection, batch)
            stored += batch.height
        settle_open_intervals(connection)
    return stored


def _rebuild_by_shard(
    engine: Engine,
    archive: HeartbeatArchive,
    policy: SeasonPolicy,
    plan: ComputePlan,
    progress: Callable[[str], None] | None,
) -> int:
    with unit_of_work(engine) as session:
        devices = interval_devices(session.connection())
    with plan.work("rewards-rebuild-") as work, plan.executor() as executor:
        job = RebuildJob(archive.url, policy, plan.shards(devices), work)
        batches = rebuild_by_shard(job, executor, progress)
        with unit_of_work(engine) as session:
            connection = session.connection()
            delete_intervals(connection)
            stored = 0
            for batch in batches:
                insert_intervals(connection, batch)
                stored += batch.height
            settle_open_intervals(connection)
    return stored


class BadDays(ServiceError):
    """A rebuild's day range is empty."""

    kind = "invalid"


def _within(beats: pl.DataFrame, bounds: pl.DataFrame, lo: datetime, hi: datetime) -> pl.DataFrame:
    """Those of `beats` observed in their device's [lo, hi) of `bounds`, or in [lo, hi)
    for a device not listed there."""
    joined = beats.join(bounds, on="device_id", how="left").with_columns(
        pl.col("lo").fill_null(lo), pl.col("hi").fill_null(hi)
    )
    inside = (pl.col("observed_at") >= pl.col("lo")) & (pl.col("observed_at") < pl.col("hi"))
    return joined.filter(inside).select(beats.columns)


def _widened(
    connection: Connection, days: tuple[date, date], policy: SeasonPolicy
) -> tuple[datetime, datetime, Callable[[pl.DataFrame], pl.DataFrame]]:
    """Take out the stored intervals within a liveness timeout (and a period) of the UTC
    days' range; return the range widened to cover them whole, and the filter that keeps
    each device's heartbeats in the range it is recomputed over: the days' range widened
    to its own taken intervals (another device's long interval must not widen it: its
    intervals there are stored and stay)."""
    first, last = days
    if last < first:
        raise BadDays(f"the range ends ({last}) before it starts ({first})")
    start = datetime.combine(first, datetime.min.time(), UTC)
    end = datetime.combine(last, datetime.min.time(), UTC) + timedelta(days=1)
    lo, hi = start, end
    reach = policy.liveness_timeout_us + policy.heartbeat_period_us
    taken = take_intervals_overlapping(
        connection, lo_us=to_us(start) - reach, hi_us=to_us(end) + reach
    )
    bounds = taken.group_by("device_id").agg(
        pl.min_horizontal(pl.col("start").min(), pl.lit(start)).alias("lo"),
        pl.max_horizontal(pl.col("end").max(), pl.lit(end)).alias("hi"),
    )
    if taken.height:
        lowest = int(taken.get_column("start").dt.epoch("us").min())  # type: ignore[arg-type]
        highest = int(taken.get_column("end").dt.epoch("us").max())  # type: ignore[arg-type]
        start, end = min(start, from_us(lowest)), max(end, from_us(highest))
    return start, end, partial(_within, bounds=bounds, lo=lo, hi=hi)


def apply_retention(engine: Engine, *, now: datetime, keep: timedelta) -> int:
    """Drop raw heartbeats older than `keep` (DESIGN 7); intervals derived from them stay.

    Returns how many heartbeats were deleted.
    """
    with unit_of_work(engine) as session:
        return prune_heartbeats(session.connection(), observed_before_us=to_us(now - keep))


def online_counts(
    connection: Connection, *, start: datetime, end: datetime, step: timedelta
) -> pl.DataFrame:
    """Devices online at each instant start, start + step, ... before end (at, online),
    from the per-instant tallies the database adds up (not from every interval)."""
    counted = interval_tallies(
        connection,
        start_us=to_us(start),
        step_us=step // timedelta(microseconds=1),
        until_us=to_us(max(end, start)),
    )
    return counts_from_tallies(counted, start=start, end=end, step=step)
