"""Outage detection: fleet online counts and the incidents they suggest (issue 3 item 4).

Pure: counts come from intervals, proposals from counts or from job runs. Proposals are only
suggestions; nothing here decides that an incident counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from rewards.core.frames import TIME, to_us


@dataclass(frozen=True)
class DetectorSettings:
    """Parameters of the outage detector."""

    drop_share: float = 0.2
    window: timedelta = timedelta(minutes=15)
    recover_share: float = 0.8
    step: timedelta = timedelta(minutes=1)
    recovery_deadline: timedelta = timedelta(hours=48)


@dataclass(frozen=True)
class Outage:
    """A proposed incident window; `end` None while the fleet has not recovered."""

    kind: str  # "fleet-drop" or "api-unreachable"
    start: datetime
    end: datetime | None
    detail: str


def fleet_online_counts(
    intervals: pl.DataFrame, *, start: datetime, end: datetime, step: timedelta
) -> pl.DataFrame:
    """Devices online at each instant start, start + step, ... before end: at, online."""
    step_us = step // timedelta(microseconds=1)
    instants = pl.int_range(to_us(start), to_us(end), step_us, eager=True, dtype=pl.Int64)
    starts = intervals.get_column("start").cast(pl.Int64).sort()
    ends = intervals.get_column("end").cast(pl.Int64).sort()
    # online at t: intervals with start <= t minus those with end <= t
    online = starts.search_sorted(instants, side="right").cast(pl.Int64) - ends.search_sorted(
        instants, side="right"
    ).cast(pl.Int64)
    return pl.DataFrame({"at": instants.cast(TIME), "online": online})


def fleet_drops(
    counts: pl.DataFrame, *, drop_share: float, window: timedelta, recover_share: float
) -> list[Outage]:
    """Windows in which the online count fell by at least `drop_share` of its highest level
    in the preceding `window`, ending when it is back to `recover_share` of that level."""
    if counts.height < 2:
        return []
    step = counts.get_column("at")[1] - counts.get_column("at")[0]
    span = max(1, window // step)
    frame = counts.with_columns(
        baseline=pl.col("online").rolling_max(window_size=span, min_samples=1).shift(1)
    )
    at = frame.get_column("at").to_list()
    online = frame.get_column("online").to_list()
    baseline = frame.get_column("baseline").to_list()
    outages: list[Outage] = []
    i = 1
    while i < len(online):
        level = baseline[i]
        if level and online[i] <= (1 - drop_share) * level:
            target = recover_share * level
            back = next((j for j in range(i + 1, len(online)) if online[j] >= target), None)
            outages.append(
                Outage(
                    kind="fleet-drop",
                    # the fall happened within the step before the first low count
                    start=at[i - 1],
                    end=at[back] if back is not None else None,
                    detail=f"online fell from {level} to {online[i]} within {window}; "
                    + (
                        f"back to {online[back]} at {at[back]:%Y-%m-%d %H:%MZ}"
                        if back is not None
                        else "not yet recovered"
                    ),
                )
            )
            if back is None:
                break
            i = back
        i += 1
    return outages


def unreachable_periods(runs: pl.DataFrame) -> list[Outage]:
    """Periods in which the engine could not pull from the uptime API: from the start of
    the first failed run to the start of the next successful one. `runs`: started_at,
    status ('succeeded', 'failed', ...), in any order."""
    ordered = runs.filter(pl.col("status").is_in(["succeeded", "failed"])).sort("started_at")
    outages: list[Outage] = []
    began: datetime | None = None
    failures = 0
    for started, status in ordered.select("started_at", "status").iter_rows():
        if status == "failed":
            began = began or started
            failures += 1
        elif began is not None:
            outages.append(
                Outage(
                    "api-unreachable",
                    began,
                    started,
                    f"{failures} failed pulls from the uptime API",
                )
            )
            began, failures = None, 0
    if began is not None:
        outages.append(
            Outage(
                "api-unreachable",
                began,
                None,
                f"{failures} failed pulls from the uptime API, still failing",
            )
        )
    return outages


__all__ = [
    "DetectorSettings",
    "Outage",
    "fleet_drops",
    "fleet_online_counts",
    "unreachable_periods",
]
