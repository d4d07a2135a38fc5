"""DESIGN 4.5's version scope without every raw heartbeat: the intervals and the heartbeats
within one liveness timeout before each incident's start give the same versions as all
of the heartbeats (the database keeps raw heartbeats only for the settlement window)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core import (
    INCIDENT_VERSIONS,
    incident_versions,
    incident_versions_near,
    online_intervals,
)
from tests.builders import at, concat, heartbeats, incidents, policy
from tests.core.test_intervals import BASE, frame_of, record

P = policy()
TIMEOUT = timedelta(microseconds=P.liveness_timeout_us)


def near_of(beats: pl.DataFrame, starts: list[object]) -> pl.DataFrame:
    """Only the heartbeats within a liveness timeout before (and at) one of `starts`."""
    keep = pl.lit(False)
    for start in starts:
        window = (pl.col("observed_at") > pl.lit(start) - TIMEOUT) & (
            pl.col("observed_at") <= pl.lit(start)
        )
        keep = keep | window
    return beats.filter(keep)


def scoped(*offsets_s: int) -> pl.DataFrame:
    rows = [
        {
            "id": f"inc-{k}",
            "start": (BASE + timedelta(seconds=s)).isoformat().replace("+00:00", "Z"),
            "end": (BASE + timedelta(seconds=s + 600)).isoformat().replace("+00:00", "Z"),
            "scope": {"agent_version_below": "1.10"},
        }
        for k, s in enumerate(offsets_s)
    ]
    return incidents(*rows, {"id": "all", "start": "2024-04-25T08:00Z", "end": "2024-04-25T09:00Z"})


def ordered(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    return frame.select(list(INCIDENT_VERSIONS)).sort("incident_id", "device_id").rows()


@settings(max_examples=300, deadline=None)
@given(records=st.lists(record, max_size=60), offsets=st.lists(st.integers(-60, 1900), max_size=3))
def test_versions_from_intervals_and_nearby_heartbeats_equal_all_heartbeats(  # type: ignore[no-untyped-def]
    records, offsets
) -> None:
    beats = frame_of(records)
    confirmed = scoped(*offsets)
    starts = confirmed.get_column("start").to_list()
    expected = incident_versions(beats, confirmed)
    got = incident_versions_near(confirmed, online_intervals(beats, P), near_of(beats, starts), P)
    assert ordered(got) == ordered(expected)


def test_a_version_changed_inside_an_interval_needs_the_nearby_heartbeats() -> None:
    """An upgrade (and a downgrade back) inside one interval: the interval's first and last
    versions say 1.9, the heartbeat just before the incident says 2.0."""
    beats = concat(
        heartbeats("gpu-1", start="2024-04-25T08:00Z", n=5, version="1.9"),
        heartbeats("gpu-1", start="2024-04-25T08:05Z", n=5, version="2.0"),
        heartbeats("gpu-1", start="2024-04-25T08:10Z", n=5, version="1.9"),
    )
    confirmed = scoped(7 * 60 + 30)
    start = confirmed.get_column("start")[0]
    got = incident_versions_near(confirmed, online_intervals(beats, P), near_of(beats, [start]), P)
    assert got.rows() == [("inc-0", "gpu-1", "2.0")]
    without = incident_versions_near(confirmed, online_intervals(beats, P), beats.clear(), P)
    assert without.is_empty()  # the interval alone cannot tell: why the window is read


def test_a_device_silent_before_the_start_takes_its_last_intervals_version() -> None:
    beats = concat(
        heartbeats("gpu-1", start="2024-04-25T06:00Z", n=3, version="1.9"),
        heartbeats("gpu-1", start="2024-04-25T07:00Z", n=3, version="1.8"),
    )
    confirmed = scoped(0)
    got = incident_versions_near(confirmed, online_intervals(beats, P), beats.clear(), P)
    assert got.rows() == [("inc-0", "gpu-1", "1.8")]
    assert at("2024-04-25T08:00Z") == confirmed.get_column("start")[0]
