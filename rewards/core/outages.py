"""Outage detection: fleet online counts and the incidents they suggest (issue 3 item 4).

Pure: counts come from intervals, proposals from counts or from job runs. Proposals are only
suggestions; nothing here decides that an incident counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
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


def instant_index(times: pl.Expr, start_us: int, step_us: int) -> pl.Expr:
    """For times in µs, the index k of the first instant start + k * step at or after each
    (0 for times at or before start): an interval that starts (or ends) at that time counts
    as started (ended) from instant k on. The database computes the same (rewards/db)."""
    return (
        pl.when(times <= start_us)
        .then(pl.lit(0, pl.Int64))
        .otherwise((times - start_us + step_us - 1) // step_us)
    )


def tallies(intervals: pl.DataFrame, *, start: datetime, step: timedelta) -> pl.DataFrame:
    """How many intervals start and end at each instant index: bound ("start" or "end"),
    k, n. What the online count needs, small enough to send from a database."""
    start_us, step_us = to_us(start), step // timedelta(microseconds=1)
    return pl.concat(
        intervals.select(
            pl.lit(bound).alias("bound"),
            instant_index(pl.col(bound).cast(pl.Int64), start_us, step_us).alias("k"),
        )
        .group_by("bound", "k")
        .agg(pl.len().cast(pl.Int64).alias("n"))
        for bound in ("start", "end")
    )


def counts_from_tallies(
    counted: pl.DataFrame, *, start: datetime, end: datetime, step: timedelta
) -> pl.DataFrame:
    """Devices online at each instant start, start + step, ... before end (at, online),
    from `tallies`: online at instant k is the intervals started by k minus those ended."""
    step_us = step // timedelta(microseconds=1)
    instants = pl.int_range(to_us(start), to_us(end), step_us, eager=True, dtype=pl.Int64)
    size = instants.len()

    def running(bound: str) -> np.ndarray:
        part = counted.filter((pl.col("bound") == bound) & (pl.col("k") < size))
        dense: np.ndarray = np.bincount(
            part.get_column("k").to_numpy(), weights=part.get_column("n").to_numpy(),
            minlength=size,
        ).astype(np.int64)  # fmt: skip
        return np.cumsum(dense)

    online = running("start") - running("end") if size else np.zeros(0, np.int64)
    return pl.DataFrame({"at": instants.cast(TIME), "online": pl.Series(online, dtype=pl.Int64)})


def fleet_online_counts(
    intervals: pl.DataFrame, *, start: datetime, end: datetime, step: timedelta
) -> pl.DataFrame:
    """Devices online at each instant start, start + step, ... before end: at, online."""
    return counts_from_tallies(
        tallies(intervals, start=start, step=step), start=start, end=end, step=step
    )


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
