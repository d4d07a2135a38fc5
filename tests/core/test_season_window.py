"""A season's results from its window of the history (core/season_window.py) are those of
the whole history: devices online long before and after the season, incidents before it
whose recovery reaches into it, versions taken from the interval just before the window."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core import (
    HEARTBEATS,
    INCIDENTS,
    device_epochs,
    incident_versions,
    incident_versions_near,
    input_window,
    online_intervals,
    season_incidents,
    window_intervals,
)
from rewards.core.frames import to_us
from tests.core.test_eligibility_properties import DEVICE_IDS, T0, US, P

# The season is minutes 0-180; the history runs from 10 hours before it to 10 after.
beat = st.tuples(
    st.sampled_from(DEVICE_IDS),
    st.integers(-600, 780).map(lambda k: T0 + timedelta(minutes=k)),
    st.sampled_from(["b1", "b2"]),
    st.sampled_from(["1.9.10", "1.10", "v2"]),
)
run = st.tuples(beat, st.integers(1, 40), st.sampled_from([1, 3, 7])).map(
    lambda r: [
        (r[0][0], r[0][1] + timedelta(minutes=r[2] * i), r[0][2], r[0][3]) for i in range(r[1])
    ]
)
incident = st.fixed_dictionaries(
    {
        "incident_id": st.sampled_from(["i1", "i2", "i3", "i4"]),
        "start": st.integers(-600, 400).map(lambda k: T0 + timedelta(minutes=k)),
        "length_min": st.integers(1, 300),
        "recovery_deadline_us": st.integers(0, 600).map(lambda m: m * 60 * US),
        "scope_all": st.booleans(),
        "scope_device_ids": st.lists(st.sampled_from(DEVICE_IDS), max_size=2),
        "scope_version_below": st.sampled_from([None, "1.10", "2"]),
    }
)


def _incidents(raw: list[dict[str, object]]) -> pl.DataFrame:
    rows = [
        {**{k: i[k] for k in INCIDENTS if k != "end"},
         "end": i["start"] + timedelta(minutes=i["length_min"])}  # type: ignore[operator]
        for i in raw
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=dict(INCIDENTS))


@settings(max_examples=150, deadline=None)
@given(
    runs=st.lists(run, max_size=10),
    raw=st.lists(incident, max_size=4, unique_by=lambda i: i["incident_id"]),
)
def test_the_window_of_the_history_gives_the_whole_historys_results(runs, raw) -> None:  # type: ignore[no-untyped-def]
    heartbeats = pl.DataFrame(
        [b for chunk in runs for b in chunk], schema=dict(HEARTBEATS), orient="row"
    )
    incidents = _incidents(raw)
    intervals = online_intervals(heartbeats, P)
    whole = device_epochs(
        intervals,
        P,
        incidents=incidents,
        incident_versions=incident_versions(heartbeats, incidents),
    )

    relevant = season_incidents(incidents, P)
    lo, hi = input_window(P, relevant)
    assert lo <= to_us(P.start) and hi == to_us(P.start) + P.epoch_count * P.epoch_length_us
    kept = window_intervals(intervals, lo, hi)
    assert set(kept["device_id"]) == set(intervals["device_id"])  # every device keeps one
    # the database's path: versions from the kept intervals and the heartbeats near starts
    versions = incident_versions_near(relevant, kept, heartbeats, P)
    expected = incident_versions(heartbeats, relevant)
    assert versions.sort(pl.all()).equals(expected.sort(pl.all()))  # in any order
    windowed = device_epochs(kept, P, incidents=relevant, incident_versions=versions)
    assert windowed.equals(whole)


def test_the_window_keeps_each_devices_neighbours_and_what_overlaps() -> None:
    minute = 60 * US
    lo, hi = 100 * minute, 200 * minute
    spans = {
        "a": [(0, 10), (20, 30), (90, 100), (150, 160), (199, 250), (260, 270), (300, 310)],
        "b": [(0, 5), (10, 20)],  # long gone: its last interval is kept
        "c": [(30, 40), (95, 105), (120, 130)],  # one overlaps lo: none before it is kept
    }
    intervals = pl.DataFrame(
        [(d, s * minute, e * minute) for d, pieces in spans.items() for s, e in pieces],
        schema=["device_id", "start", "end"],
        orient="row",
    )
    kept = window_intervals(intervals, lo, hi)
    starts = list(zip(kept["device_id"], kept["start"] // minute, strict=True))
    # a: (90, 100) ends at lo (just before); (199, 250) overlaps; (260, 270) just after
    assert starts == [
        ("a", 90),
        ("a", 150),
        ("a", 199),
        ("a", 260),
        ("b", 10),
        ("c", 95),
        ("c", 120),
    ]


def test_a_return_however_late_after_the_season_decides_its_incident_credit() -> None:
    """DESIGN 4.3 and 4.5: time after a device's last interval is not a gap, so a device
    silent from an incident to the season's end is credited only if it ever comes back,
    and the season's window keeps that return however late (no horizon past the season's
    end bounds what a season's results depend on)."""
    minute = timedelta(minutes=1)
    up = [("gpu-a", T0 + 100 * minute + k * minute, "b1", "1.10") for k in range(20)]
    back = [("gpu-a", T0 + timedelta(days=40) + k * minute, "b2", "1.10") for k in range(3)]
    incidents = _incidents(
        [
            {
                "incident_id": "i1",
                "start": T0 + 125 * minute,
                "length_min": 10,
                "recovery_deadline_us": 600 * 60 * US,
                "scope_all": True,
                "scope_device_ids": [],
                "scope_version_below": None,
            }
        ]
    )
    relevant = season_incidents(incidents, P)
    credited = []
    for heartbeats in (up, up + back):
        frame = pl.DataFrame(heartbeats, schema=dict(HEARTBEATS), orient="row")
        intervals = online_intervals(frame, P)
        kept = window_intervals(intervals, *input_window(P, relevant))
        assert kept.height == intervals.height  # the return, 40 days on, is in the window
        rows = device_epochs(
            kept, P, incidents=relevant, incident_versions=incident_versions(frame, relevant)
        )
        credited.append(rows.filter(pl.col("epoch") == 2)["credited_s"].item())
    assert credited == [0.0, 3_300.0]  # never back: nothing; back: 12:05 to the season's end
