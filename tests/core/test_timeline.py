"""A device page's pieces of time and its gaps in words (rewards/core/timeline.py)."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from itertools import pairwise

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core import HEARTBEATS, INCIDENTS, device_epochs, incident_versions, online_intervals
from rewards.core.timeline import device_gaps, gap_words, grid_state, timeline_segments
from tests.builders import concat, heartbeats, incidents, policy
from tests.core.test_eligibility_properties import P, incident, run

US = 1_000_000


@settings(max_examples=120, deadline=None)
@given(
    runs=st.lists(run, max_size=8),
    raw_incidents=st.lists(incident, max_size=3, unique_by=lambda i: i["incident_id"]),
)
def test_the_pieces_drawn_are_exactly_the_time_the_pipeline_counts(runs, raw_incidents) -> None:  # type: ignore[no-untyped-def]
    records = [r for chunk in runs for r in chunk]
    beats = pl.DataFrame(records, schema=dict(HEARTBEATS), orient="row")
    confirmed = pl.DataFrame(
        [
            {**{k: i[k] for k in INCIDENTS if k != "end"},
             "end": i["start"] + timedelta(minutes=i["length_min"])}
            for i in raw_incidents
        ],
        schema=dict(INCIDENTS),
    )  # fmt: skip
    versions = incident_versions(beats, confirmed)
    intervals = online_intervals(beats, P)
    found = device_gaps(intervals, P, incidents=confirmed, incident_versions=versions)
    pieces = timeline_segments(intervals, found, P)
    drawn: dict[tuple[str, int, str], int] = defaultdict(int)
    by_epoch: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for device, epoch, kind, s, e in pieces.iter_rows():
        drawn[(device, epoch, kind)] += e - s
        by_epoch[(device, epoch)].append((s, e))
    results = device_epochs(intervals, P, incidents=confirmed, incident_versions=versions)
    for row in results.iter_rows(named=True):
        key = (row["device_id"], row["epoch"])
        for kind in ("online", "bridged", "credited"):
            assert drawn[(*key, kind)] / US == row[f"{kind}_s"], (key, kind)
    for spans in by_epoch.values():  # pieces never overlap
        ordered = sorted(spans)
        assert all(a[1] <= b[0] for a, b in pairwise(ordered))
    for gap in found:  # a gap is bridged whole, or split into credited and uncounted
        covered = sum(e - s for s, e in gap.credited) + sum(e - s for s, e in gap.uncounted())
        assert gap.bridged or covered == gap.g1 - gap.g0


FOUR_H = policy(
    start="2024-04-25T00:00:00Z",
    end="2024-04-26T00:00:00Z",
    epoch_length="1d",
    restart_grace="10m",
    max_bridges_per_epoch=1,
    min_uptime_ratio="0.9",
)


def _words(beats: pl.DataFrame, confirmed: pl.DataFrame | None = None) -> list[str]:
    intervals = online_intervals(beats, FOUR_H)
    found = device_gaps(intervals, FOUR_H, incidents=confirmed)
    deadlines = {} if confirmed is None else dict(
        confirmed.select("incident_id", "recovery_deadline_us").iter_rows()
    )  # fmt: skip
    return [gap_words(g, FOUR_H, deadlines) for g in found]


def test_gaps_in_words() -> None:
    restart = concat(
        heartbeats("gpu-1", start="2024-04-25T01:00:00Z", n=10, boot="a"),
        heartbeats("gpu-1", start="2024-04-25T01:15:00Z", n=10, boot="b"),  # 6 min, rebooted
        heartbeats("gpu-1", start="2024-04-25T01:30:00Z", n=10, boot="c"),  # again: over limit
        heartbeats("gpu-1", start="2024-04-25T05:00:00Z", n=10, boot="c"),  # 3 h 21 min
    )
    assert _words(restart) == [
        "Down 2024-04-25 01:10, back 5 min later, after a restart: bridged (restart grace).",
        "Down 2024-04-25 01:25, back 5 min later, after a restart, but the epoch's bridges "
        "were used up: not counted.",
        "Down 2024-04-25 01:40, back 3 h 20 min later: longer than the 10 min restart grace, "
        "and no incident covers it: not counted.",
    ]
    upgrade = incidents(
        {"id": "apr-25", "start": "2024-04-25T01:30:00Z", "end": "2024-04-25T02:00:00Z",
         "deadline": "48h"},
    )  # fmt: skip
    worded = _words(restart, upgrade)
    assert worded[2] == (
        "Down 2024-04-25 01:40, back 3 h 20 min later, within the 48 h recovery deadline of "
        "incident apr-25: credited."
    )


def test_a_partly_credited_gap_says_what_was_not_counted() -> None:
    beats = concat(
        heartbeats("gpu-1", start="2024-04-25T01:00:00Z", n=10),
        heartbeats("gpu-1", start="2024-04-25T06:00:00Z", n=10),
    )
    short = incidents(
        {"id": "blip", "start": "2024-04-25T01:00:00Z", "end": "2024-04-25T02:00:00Z",
         "deadline": "1h"},
    )  # fmt: skip
    (words,) = _words(beats, short)
    assert words == (
        "Down 2024-04-25 01:10, back 4 h 50 min later: 1 h 50 min credited (within the 1 h "
        "recovery deadline of incident blip); 3 h not counted."
    )


def test_the_grid_tells_help_from_plain_eligibility() -> None:
    day = 86_400.0
    base = {"eligible": True, "reason": "ELIGIBLE", "bridged_s": 0.0, "credited_s": 0.0}
    assert grid_state({**base, "online_s": day}, FOUR_H) == "eligible"
    assert grid_state({**base, "online_s": 0.95 * day, "bridged_s": 60.0}, FOUR_H) == "eligible"
    assert grid_state({**base, "online_s": 0.5 * day, "credited_s": 0.5 * day}, FOUR_H) == "helped"
    assert grid_state({**base, "eligible": False, "reason": "NO_HEARTBEATS", "online_s": 0.0},
                      FOUR_H) == "silent"  # fmt: skip
    assert grid_state({**base, "eligible": False, "reason": "BELOW_MIN_UPTIME",
                       "online_s": 10.0}, FOUR_H) == "ineligible"  # fmt: skip
