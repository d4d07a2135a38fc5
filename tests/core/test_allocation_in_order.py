"""One epoch's allocation without a sort equals the sorting `allocate`, ties and all."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core.allocation import allocate, allocate_in_order

weights = st.lists(  # few distinct values: ties at the cut-off are the rule, not the exception
    st.sampled_from(
        [0, 1, 2, 3, 7, 86_400_000_000, 86_400_000_000 * 3, 2**62]
    ),  # w x pool fits Int128
    max_size=50,
)


@settings(max_examples=400, deadline=None)
@given(weights, st.sampled_from([0, 1, 2, 5, 999_983, 2_000_000_000_000, 2**62]))
def test_equals_the_sorting_allocation(values: list[int], pool: int) -> None:
    ids = [f"gpu-{i:03d}" for i in range(len(values))]  # in device_id order
    frame = pl.DataFrame(
        {"epoch": [0] * len(values), "device_id": ids, "weight": values},
        schema={"epoch": pl.Int64, "device_id": pl.String, "weight": pl.Int128},
    )
    expected = dict(allocate(frame, pool).select("device_id", "reward").rows())
    got = allocate_in_order(frame.get_column("weight"), pool).to_list()
    assert got == [expected[i] for i in ids]
    assert sum(got) == (pool if sum(values) else 0)


def test_ties_at_the_cut_off_go_to_the_first_in_order() -> None:
    paid = allocate_in_order(pl.Series([1, 1, 1], dtype=pl.Int128), 2).to_list()
    assert paid == [1, 1, 0]


def test_a_negative_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        allocate_in_order(pl.Series([1], dtype=pl.Int128), -1)
