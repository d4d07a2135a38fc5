"""Use cases over stored online intervals."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine

from rewards.core import counts_from_tallies, to_us
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import (
    count_heartbeats,
    interval_tallies,
    load_intervals,
    prune_heartbeats,
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
