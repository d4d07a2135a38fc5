"""What of the stored history a season's results depend on (DESIGN 4, 8).

Intervals are never pruned (they are rebuilt from the archive), so a database holds every
season's. A season's results depend only on:

* the confirmed incidents that can credit its time (`season_incidents`): begun before the
  season ends, crediting (to end + recovery deadline) past its start;
* of each device, the intervals overlapping the window [lo, hi) (`input_window`: the
  season's epochs, reaching back to the earliest such incident's start), and the one
  interval just before it and the one just after it (`window_intervals`).

Why that is enough. Every rule reads a device's intervals in pairs (a gap: bridges and
credit) or one at a time (online time, clipped to the epochs). A gap that touches the
season has both its intervals kept: the earlier is in the window or is the one just before
it, the later is in the window or is the one just after it. Gaps wholly outside the season
count against no epoch's bridge limit and credit no epoch. The time before a device's first
kept interval, and after its last, lies outside the season as before. A device's version
at an incident's start (its last heartbeat at or before it, lo <= start < hi) is in an
interval of the window or in the one just before it. Every device with an interval keeps
one, so the same devices get rows. tests/core/test_season_window.py checks the results are
those of the whole history.
"""

from __future__ import annotations

import polars as pl

from rewards.core.frames import to_us
from rewards.core.policy import SeasonPolicy


def season_incidents(incidents: pl.DataFrame, policy: SeasonPolicy) -> pl.DataFrame:
    """The incidents (INCIDENTS) that can credit time in the season's epochs."""
    start, end = to_us(policy.start), _season_end_us(policy)
    reach = pl.col("end").cast(pl.Int64) + pl.col("recovery_deadline_us")
    return incidents.filter((pl.col("start").cast(pl.Int64) < end) & (reach > start))


def input_window(policy: SeasonPolicy, incidents: pl.DataFrame) -> tuple[int, int]:
    """[lo, hi) in µs: the season's epochs, reaching back to the earliest start of
    `incidents` (those of `season_incidents`)."""
    lo = to_us(policy.start)
    if incidents.height:
        lo = min(lo, int(incidents.get_column("start").cast(pl.Int64).min()))  # type: ignore[arg-type]
    return lo, _season_end_us(policy)


def window_intervals(intervals: pl.DataFrame, lo: int, hi: int) -> pl.DataFrame:
    """Of `intervals` (INTERVALS, any order), those overlapping [lo, hi) and each device's
    one just before (the last begun before lo, when it ends by lo) and one just after (the
    first begun at hi or later), in the order given: what the database's season read
    returns (db/heartbeats.py)."""
    start, end = pl.col("start").cast(pl.Int64), pl.col("end").cast(pl.Int64)
    device = pl.col("device_id")
    before, after = end <= lo, start >= hi
    last_begun = start == start.filter(start < lo).max().over(device)  # may overlap lo
    return intervals.filter(
        ~before & ~after
        | before & last_begun
        | after & (start == start.filter(after).min().over(device))
    )


def _season_end_us(policy: SeasonPolicy) -> int:
    return to_us(policy.start) + policy.epoch_count * policy.epoch_length_us
