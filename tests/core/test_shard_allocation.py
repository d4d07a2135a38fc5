"""Allocation over shards equals allocation over the whole fleet, whatever the split."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core.allocation import allocate
from rewards.core.shard_allocation import (
    HISTOGRAM_BUCKETS,
    allocate_over_shards,
    boundary_buckets,
    remainder_histogram,
    shard_totals,
    shares,
)


def together(shards: list[pl.DataFrame], pool: int) -> dict[tuple[int, str], int]:
    paid = pl.concat(allocate_over_shards(shards, pool))
    assert paid.height == sum(s.height for s in shards)  # every row once
    return {(e, d): r for e, d, r in paid.select("epoch", "device_id", "reward").rows()}


def whole(weights: pl.DataFrame, pool: int) -> dict[tuple[int, str], int]:
    return {
        (e, d): r
        for e, d, r in allocate(weights, pool).select("epoch", "device_id", "reward").rows()
    }


rows = st.lists(
    st.tuples(
        st.integers(0, 3),  # epoch
        st.text("aAzZ09-é", min_size=1, max_size=3),  # device ids: case and bytes matter
        st.sampled_from([0, 1, 1, 2, 3, 7, 86_400_000_000, 86_400_000_000 * 3]),  # ties
        st.integers(0, 6),  # which shard
    ),
    max_size=60,
    unique_by=lambda r: (r[0], r[1]),
)


@settings(max_examples=300)
@given(rows, st.sampled_from([0, 1, 5, 999, 10**18 + 7]), st.sampled_from([1, 2, 7]))
def test_any_split_pays_what_the_whole_fleet_would(rows, pool: int, shards: int) -> None:  # type: ignore[no-untyped-def]
    frame = pl.DataFrame(
        [(e, d, w) for e, d, w, _ in rows],
        schema={"epoch": pl.Int64, "device_id": pl.String, "weight": pl.Int64},
        orient="row",
    )
    parts = [
        pl.DataFrame(
            [(e, d, w) for e, d, w, s in rows if s % shards == k],
            schema=frame.schema,
            orient="row",
        )
        for k in range(shards)
    ]
    assert together(parts, pool) == whole(frame, pool)


def test_a_tie_group_spread_over_shards_is_ordered_by_device_id() -> None:
    """Four equal weights, one unit left over for three of them: the unit goes to the
    smallest ids in byte order, across shards ('B' < 'a' < 'b' < 'c')."""
    parts = [
        pl.DataFrame({"epoch": [0, 0], "device_id": ["c", "B"], "weight": [1, 1]}),
        pl.DataFrame({"epoch": [0, 0], "device_id": ["b", "a"], "weight": [1, 1]}),
    ]
    assert together(parts, 7) == {(0, "B"): 2, (0, "a"): 2, (0, "b"): 2, (0, "c"): 1}


def test_only_the_boundary_bucket_travels_to_the_driver() -> None:
    """The rows a shard hands over to settle the cut-off are one bucket's worth."""
    n = 20_000
    weights = pl.DataFrame(
        {
            "epoch": [0] * n,
            "device_id": [f"gpu-{i:05d}" for i in range(n)],
            "weight": range(1, n + 1),
        }
    )
    totals = shard_totals(weights)
    pool = 10**9 + 7
    histogram = remainder_histogram(shares(weights, totals, pool))
    (boundary,) = boundary_buckets([histogram], pool).iter_rows(named=True)
    in_bucket = histogram.filter(pl.col("bucket") == boundary["bucket"]).get_column("rows").item()
    assert in_bucket < 4 * n // HISTOGRAM_BUCKETS
    assert together([weights], pool) == whole(weights, pool)


def test_a_negative_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        allocate_over_shards([], -1)
