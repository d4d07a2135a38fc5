"""The fleet's online count, from per-instant tallies of interval starts and ends (what a
database sends instead of every interval), against counting by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core.frames import TIME, to_us
from rewards.core.outages import counts_from_tallies, fleet_online_counts, tallies

T0 = datetime(2024, 4, 25, tzinfo=UTC)
US = 1_000_000

span = st.tuples(st.integers(-600, 3_600), st.integers(1, 1_800)).map(
    lambda p: (p[0] * US, (p[0] + p[1]) * US)
)


@settings(max_examples=200, deadline=None)
@given(
    spans=st.lists(span, max_size=40),
    offset_s=st.integers(-300, 600),
    step_s=st.sampled_from([1, 7, 60, 300]),
    instants=st.integers(0, 80),
)
def test_counts_from_tallies_equal_counting_each_instant_by_hand(
    spans: list[tuple[int, int]], offset_s: int, step_s: int, instants: int
) -> None:
    base = to_us(T0)
    intervals = pl.DataFrame(
        {"start": [base + s for s, _ in spans], "end": [base + e for _, e in spans]},
        schema={"start": pl.Int64, "end": pl.Int64},
    ).with_columns(pl.col("start").cast(TIME), pl.col("end").cast(TIME))
    start = T0 + timedelta(seconds=offset_s)
    step = timedelta(seconds=step_s)
    end = start + instants * step
    got = counts_from_tallies(tallies(intervals, start=start, step=step), start=start,
                              end=end, step=step)  # fmt: skip
    assert got.height == instants
    for k, (at, online) in enumerate(got.iter_rows()):
        t = to_us(start) + k * step_s * US
        assert to_us(at) == t
        assert online == sum(1 for s, e in spans if base + s <= t < base + e), k
    assert got.equals(fleet_online_counts(intervals, start=start, end=end, step=step))
