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
