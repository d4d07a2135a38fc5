"""Frame helpers the core shares (core/frames.py)."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core import sorted_by

# ids that order differently as text than as their lengths or cases would: prefixes,
# upper before lower case, bytes above ASCII, the empty id and none
ids = st.one_of(st.none(), st.sampled_from(["", "a", "ab", "b", "B", "Gpu-1", "gpu-1", "é", "z"]))


@settings(deadline=None)
@given(st.lists(st.tuples(ids, st.integers(-5, 5), st.integers(-(2**63), 2**63 - 1)), max_size=60))
def test_sorted_by_text_then_number_is_polars_order_of_both_keys(
    rows: list[tuple[str | None, int, int]],
) -> None:
    """A text first key is ranked, then the rows sorted by two integers: the same order
    of keys as polars' sort by both (bytewise text, nulls first), no row lost or made."""
    frame = pl.DataFrame(rows, schema={"device_id": pl.String, "start": pl.Int64, "x": pl.Int64},
                         orient="row")  # fmt: skip
    found = sorted_by(frame, "device_id", "start")
    expected = frame.sort("device_id", "start")
    assert found.select("device_id", "start").equals(expected.select("device_id", "start"))
    assert found.sort(pl.all()).equals(frame.sort(pl.all()))
    assert found.columns == frame.columns
