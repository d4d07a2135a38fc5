"""Use cases over stored online intervals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine

from rewards.archive import HeartbeatArchive
from rewards.core import INTERVALS, SeasonPolicy, counts_from_tallies, merge_intervals, to_us
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import (
    count_heartbeats,
    delete_intervals,
    insert_intervals,
    interval_tallies,
    load_intervals,
    prune_heartbeats,
    settle_open_intervals,
)
from rewards.services.files import write_parquet


def stored_intervals(engine: Engine) -> pl.DataFrame:
    """Every stored online interval (INTERVALS frame), sorted by device and start."""
    with unit_of_work(engine) as session:
        return load_intervals(session.connection())


def stored_heartbeat_count(engine: Engine) -> int:
    """How many distinct heartbeats are stored."""
    with unit_of_work(engine) as session:
        return count_heartbeats(session.connection())


def export_intervals(engine: Engine, path: Path) -> int:
    """Write device_id, start, end of every stored interval to Parquet; returns the count."""
    intervals = stored_intervals(engine).select("device_id", "start", "end")
    write_parquet(intervals, path)
    return intervals.height


def rebuilt_intervals(
    archive: HeartbeatArchive,
    policy: SeasonPolicy,
    on_day: Callable[[date, int], None] | None = None,
) -> Iterator[pl.DataFrame]:
    """The online intervals of every heartbeat in the archive under `policy` (DESIGN 4.2),
    computed a UTC day at a time so memory holds one day and the intervals still open at
    its end: yields batches of final intervals, in no particular order across batches.

    A heartbeat is in the partition of the day it was observed, however late it was
    delivered, so once day D is read no later heartbeat can reach an interval that ended
    more than a liveness timeout (plus a period) before D ends; the rest carry over and are
    merged with the next day by the same function that keeps intervals incrementally.
    """
    carry = pl.DataFrame(schema=dict(INTERVALS))
    reach = policy.liveness_timeout_us + policy.heartbeat_period_us
    for day in archive.days():
        start = datetime.combine(day, datetime.min.time(), UTC)
        end = start + timedelta(days=1)
        beats = archive.heartbeats(start, end)
        merged = merge_intervals(carry, beats, policy)
        still_open = pl.col("end").dt.epoch("us") >= to_us(end) - reach
        final, carry = merged.filter(~still_open), merged.filter(still_open)
        if on_day is not None:
            on_day(day, beats.height)
        if final.height:
            yield final
    if carry.height:
        yield carry


def rebuild_intervals(
    engine: Engine,
    archive: HeartbeatArchive,
    policy: SeasonPolicy,
    on_day: Callable[[date, int], None] | None = None,
) -> int:
    """Replace every stored online interval with those the archive's heartbeats give
    under `policy` (after a change of liveness_timeout, or to recover), in one
    transaction: readers see the old intervals or the new, never a mix. Returns how
    many intervals are stored."""
    with unit_of_work(engine) as session:
        connection = session.connection()
        delete_intervals(connection)
        stored = 0
        for batch in rebuilt_intervals(archive, policy, on_day):
            insert_intervals(connection, batch)
            stored += batch.height
        settle_open_intervals(connection)
    return stored


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
