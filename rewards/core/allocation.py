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
    w = pl.col("weight").cast(pl.Int128)
    total = w.sum().over("epoch")
    exact = w * pool
    shares = weights.with_columns(
        total=total,
        floor=pl.when(total > 0).then(exact // total).otherwise(0),
        remainder=pl.when(total > 0).then(exact % total).otherwise(0),
    ).with_columns(
        left=pl.when(pl.col("total") > 0)
        .then(pool - pl.col("floor").sum().over("epoch"))
        .otherwise(0)
    )
    # Remainders are below their epoch's total; when every total fits 64 bits they are
    # ranked as Int64, which sorts much faster than Int128 and orders them identically.
    if shares.is_empty() or shares.get_column("total").max() < 2**63:  # type: ignore[operator]
        shares = shares.with_columns(pl.col("remainder").cast(pl.Int64))
    ranked = shares.sort(
        ["epoch", "remainder", "device_id"], descending=[False, True, False]
    ).with_columns(rank=pl.int_range(1, pl.len() + 1).over("epoch"))
    return ranked.select(
        "epoch",
        "device_id",
        (pl.col("floor") + (pl.col("rank") <= pl.col("left")).cast(pl.Int128))
        .cast(pl.Int64)
        .alias("reward"),
    )
