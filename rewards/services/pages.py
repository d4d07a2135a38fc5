"""Use cases behind the web pages that the API has no equivalent for: the fleet's online
count over time and one device's timeline. Each reads what it needs in one transaction and
leaves the computing to the pure core."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl
from sqlalchemy import Engine

from rewards.archive import HeartbeatArchive
from rewards.core import Gap, SeasonPolicy, device_gaps, from_us, timeline_segments
from rewards.db.engine import unit_of_work
from rewards.db.incidents import incidents, incidents_frame
from rewards.db.interval_reads import last_interval_end, load_device_intervals
from rewards.services.intervals import online_counts
from rewards.services.versions import incident_versions_of

SERIES_TTL_S = 60.0  # the database scans every interval to draw it: a second or two at scale
_series: dict[tuple[int, str, int], tuple[float, pl.DataFrame]] = {}


def fleet_series(
    engine: Engine, policy: SeasonPolicy, *, now: datetime, points: int = 720
) -> pl.DataFrame:
    """Devices online (at, online) at about `points` instants over the season, up to now or
    to the last heartbeat stored, whichever is first (past it, the data ends: nothing is
    known to be offline). Kept for SERIES_TTL_S per process."""
    key = (id(engine), policy.season_id, points)
    cached = _series.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    series = _fleet_series(engine, policy, now=now, points=points)
    _series[key] = (time.monotonic() + SERIES_TTL_S, series)
    return series


def _fleet_series(
    engine: Engine, policy: SeasonPolicy, *, now: datetime, points: int
) -> pl.DataFrame:
    with unit_of_work(engine) as session:
        last = last_interval_end(session.connection())
        end = min(now, policy.end) if last is None else min(now, policy.end, from_us(last))
        if end <= policy.start:
            return pl.DataFrame(schema={"at": pl.Datetime("us", "UTC"), "online": pl.Int64})
        step = max(timedelta(minutes=1), (end - policy.start) / points)
        step = timedelta(minutes=int(step.total_seconds() // 60))
        return online_counts(session.connection(), start=policy.start, end=end, step=step)


@dataclass(frozen=True)
class DeviceTimeline:
    segments: pl.DataFrame  # device_id, epoch, kind, s, e (µs)
    gaps: list[Gap]
    deadlines: dict[str, int]  # recovery deadline (µs) per confirmed incident


def device_timeline(
    engine: Engine,
    policy: SeasonPolicy,
    device_id: str,
    archive: HeartbeatArchive | None = None,
) -> DeviceTimeline:
    """`device_id`'s epochs as drawn on its page, under the confirmed incidents."""
    with unit_of_work(engine) as session:
        intervals = load_device_intervals(session.connection(), device_id)
        confirmed = incidents_frame(incidents(session, "confirmed"))
        versions = incident_versions_of(
            session.connection(), confirmed, intervals, policy, archive, device_id
        )
    found = device_gaps(intervals, policy, incidents=confirmed, incident_versions=versions)
    deadlines = dict(confirmed.select("incident_id", "recovery_deadline_us").iter_rows())
    return DeviceTimeline(timeline_segments(intervals, found, policy), found, deadlines)
