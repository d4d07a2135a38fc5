"""Splitting each epoch's pool among its eligible devices (DESIGN 4.8)."""

from __future__ import annotations

import polars as pl


def allocate(weights: pl.DataFrame, pool: int) -> pl.DataFrame:
    """Largest-remainder shares of `pool` per epoch, exact in integers.

    `weights`: epoch, device_id, weight (non-negative integers). Shares are
    floor(pool * w / W) plus one unit to each of the largest remainders, ties broken by
    device_id ascending in byte order; each epoch sums exactly to `pool`, or pays nothing
    when its total weight is zero. Products exceed 64 bits, so the arithmetic is Int128.
    Returns epoch, device_id, reward (Int64).
    """
    if pool < 0:
        raise ValueError(f"pool must not be negative, got {pool}")
    weight = pl.col("weight").cast(pl.Int128)
    totals = weights.group_by("epoch").agg(weight.sum().alias("total"))
    # Remainders are below their epoch's total; when every total fits 64 bits they are kept
    # as Int64, which sorts much faster than Int128 and orders them identically.
    largest = totals.get_column("total").max() if totals.height else 0
    remainder_type = pl.Int64 if largest is not None and largest < 2**63 else pl.Int128  # type: ignore[operator]
    paying = pl.col("total") > 0
    shares = weights.join(totals, on="epoch").select(
        "epoch",
        "device_id",
        pl.when(paying)
        .then(weight * pool // pl.col("total"))
        .otherwise(0)
        .cast(pl.Int64)
        .alias("floor"),
        pl.when(paying)
        .then(weight * pool % pl.col("total"))
        .otherwise(0)
        .cast(remainder_type)
        .alias("remainder"),
        paying.alias("paying"),
    )
    left = shares.group_by("epoch").agg(
        pl.when(pl.col("paying").first())
        .then(pool - pl.col("floor").sum())
        .otherwise(0)
        .alias("left")
    )
    ranked = shares.sort(
        ["epoch", "remainder", "device_id"], descending=[False, True, False]
    ).with_row_index("position")
    # rank within the epoch: position minus the position of the epoch's first row
    first = pl.when(pl.col("epoch") != pl.col("epoch").shift(1).fill_null(-1)).then(
        pl.col("position")
    )
    return ranked.join(left, on="epoch").select(
        "epoch",
        "device_id",
        (
            pl.col("floor")
            + (pl.col("position") - first.forward_fill() < pl.col("left")).cast(pl.Int64)
        ).alias("reward"),
    )


def allocate_in_order(weights: pl.Series, pool: int) -> pl.Series:
    """`allocate` for one epoch whose weights are in device_id order (the order ties break
    in), without sorting: the unit-receiving remainders are those above the k-th largest
    (k = the units left after the floors), then the first ties at it in order. Returns the
    rewards (Int64) in the same order."""
    if pool < 0:
        raise ValueError(f"pool must not be negative, got {pool}")
    frame = pl.DataFrame({"weight": weights.cast(pl.Int128)})
    total = frame.get_column("weight").sum()
    if not total:
        return pl.Series(weights.name, [0] * weights.len(), dtype=pl.Int64)
    big = pl.Int128  # products exceed 64 bits
    scaled = pl.col("weight") * pl.lit(pool, big)
    # remainders are below the total: as Int64 when it fits, the same order, faster
    remainder_type = pl.Int64 if total < 2**63 else big
    shares = frame.select(
        floor=(scaled // pl.lit(total, big)).cast(pl.Int64),
        remainder=(scaled % pl.lit(total, big)).cast(remainder_type),
    )
    floor, remainder = shares.get_column("floor"), shares.get_column("remainder")
    left = pool - int(floor.sum())
    if left == 0:
        return floor.alias(weights.name)
    threshold = remainder.top_k(left).min()
    above = shares.select(pl.col("remainder") > pl.lit(threshold, remainder_type)).to_series()
    ties = shares.select(pl.col("remainder") == pl.lit(threshold, remainder_type)).to_series()
    first_ties = ties & (ties.cast(pl.Int64).cum_sum() <= left - int(above.sum()))
    return (floor + (above | first_ties).cast(pl.Int64)).alias(weights.name)
