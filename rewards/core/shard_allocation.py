"""Largest-remainder allocation (DESIGN 4.8) over device shards, without gathering them.

`allocate` needs every eligible device of an epoch in one frame to rank the remainders.
Over shards the same result comes from small exchanges (DESIGN 8):

1. each shard's total weight per epoch (`shard_totals`); the driver adds them up;
2. per shard, each row's floor and remainder (`shares`, the one step with 128-bit
   arithmetic, computed once and kept by the shard), then the sum of its floors and a
   histogram of its remainders per epoch (`remainder_histogram`); the driver finds, per
   epoch, the histogram bucket where the `left` largest remainders end
   (`boundary_buckets`);
3. per shard, only the rows in that bucket (`boundary_rows`, about 1/HISTOGRAM_BUCKETS of
   an epoch); the driver orders them by remainder, then device_id, and finds the last
   device paid an extra unit (`cutoffs`);
4. per shard, the rewards (`shard_rewards`): the floor, plus one unit where the remainder
   ranks at or above the cut-off.

Every step is a pure function of a shard's frame and small driver-side frames, so any
executor (in-process, a process pool, Dask) can run the per-shard steps, and the result
equals `allocate` over all shards together, whatever the split (tests/core).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

# Remainder buckets: each shard sends epochs x buckets histogram rows (32 B each) and the
# driver then takes the boundary bucket's rows, about 1/HISTOGRAM_BUCKETS of an epoch. At
# 6M devices in 160 shards, 4,096 buckets moved 796 MB of histograms to the driver
# (bench/distributed.py); 512 move about 80 MB, and a boundary bucket of ~8,000 rows.
HISTOGRAM_BUCKETS = 512

_TOTALS = {"epoch": pl.Int64, "total": pl.Int128}


def shard_totals(weights: pl.DataFrame) -> pl.DataFrame:
    """epoch, total: a shard's summed weight per epoch (weights: epoch, device_id, weight)."""
    return weights.group_by("epoch").agg(pl.col("weight").cast(pl.Int128).sum().alias("total"))


def add_totals(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The epochs' totals over every shard, from each shard's `shard_totals`."""
    frames = [p.cast(_TOTALS) for p in parts]  # type: ignore[arg-type]
    if not frames:
        return pl.DataFrame(schema=_TOTALS)
    return pl.concat(frames).group_by("epoch").agg(pl.col("total").sum()).sort("epoch")


def shares(weights: pl.DataFrame, totals: pl.DataFrame, pool: int) -> pl.DataFrame:
    """epoch, device_id, floor, remainder, bucket of each row of a paying epoch (`totals`
    over every shard)."""
    weight = pl.col("weight").cast(pl.Int128)
    paying = totals.filter(pl.col("total") > 0)
    return (
        weights.join(paying, on="epoch")
        .select(
            "epoch",
            "device_id",
            "total",
            (weight * pool // pl.col("total")).cast(pl.Int64).alias("floor"),
            (weight * pool % pl.col("total")).alias("remainder"),
        )
        .with_columns(
            (pl.col("remainder") * HISTOGRAM_BUCKETS // pl.col("total"))
            .cast(pl.Int64)
            .alias("bucket")
        )
        .drop("total")
    )


def remainder_histogram(shared: pl.DataFrame) -> pl.DataFrame:
    """epoch, bucket, rows, floors: per paying epoch and remainder bucket of a shard's
    `shares`, how many rows fall in it and the sum of their floors."""
    return shared.group_by("epoch", "bucket").agg(
        pl.len().cast(pl.Int64).alias("rows"), pl.col("floor").sum().alias("floors")
    )


def add_histograms(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """`remainder_histogram`s (of shards, or already added up) as one: the same buckets
    found by `boundary_buckets`, with the rows of one histogram rather than of all."""
    return (
        pl.concat(list(parts))
        .group_by("epoch", "bucket")
        .agg(pl.col("rows").sum(), pl.col("floors").sum())
    )


def boundary_buckets(histograms: Sequence[pl.DataFrame], pool: int) -> pl.DataFrame:
    """epoch, bucket, need: per paying epoch, the remainder bucket holding the last of the
    `left` largest remainders (left = pool - the sum of floors) and how many of that
    bucket's rows get the extra unit. Epochs with nothing left over have no row."""
    found = add_histograms(histograms)
    left = found.group_by("epoch").agg((pool - pl.col("floors").sum()).alias("left"))
    ranked = (
        found.join(left, on="epoch")
        .filter(pl.col("left") > 0)
        .sort(["epoch", "bucket"], descending=[False, True])
        .with_columns(above=pl.col("rows").cum_sum().over("epoch") - pl.col("rows"))
    )
    # the bucket where the running count of rows from the top first reaches `left`
    return ranked.filter(
        (pl.col("above") < pl.col("left")) & (pl.col("above") + pl.col("rows") >= pl.col("left"))
    ).select("epoch", "bucket", (pl.col("left") - pl.col("above")).alias("need"))


def boundary_rows(shared: pl.DataFrame, boundaries: pl.DataFrame) -> pl.DataFrame:
    """epoch, remainder, device_id of a shard's `shares` in each epoch's boundary bucket."""
    return shared.join(boundaries.select("epoch", "bucket"), on=["epoch", "bucket"]).select(
        "epoch", "remainder", "device_id"
    )


def cutoffs(rows: Sequence[pl.DataFrame], boundaries: pl.DataFrame) -> pl.DataFrame:
    """epoch, remainder, device_id: per epoch with units left over, the last row (by
    remainder descending, then device_id ascending in byte order) paid an extra unit."""
    ordered = (
        pl.concat(list(rows))
        .sort(["epoch", "remainder", "device_id"], descending=[False, True, False])
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("epoch"))
    )
    return (
        ordered.join(boundaries.select("epoch", "need"), on="epoch")
        .filter(pl.col("rank") == pl.col("need"))
        .select("epoch", "remainder", "device_id")
    )


def shard_rewards(
    weights: pl.DataFrame, shared: pl.DataFrame, totals: pl.DataFrame, cut: pl.DataFrame
) -> pl.DataFrame:
    """epoch, device_id, reward of a shard's rows: the floor, plus one unit at or above
    the epoch's cut-off. Rows of an epoch whose total weight is zero get nothing."""
    ranked = shared.join(
        cut.rename({"remainder": "cut_remainder", "device_id": "cut_device"}),
        on="epoch",
        how="left",
    )
    extra = pl.col("cut_remainder").is_not_null() & (
        (pl.col("remainder") > pl.col("cut_remainder"))
        | (
            (pl.col("remainder") == pl.col("cut_remainder"))
            & (pl.col("device_id") <= pl.col("cut_device"))
        )
    )
    paid = ranked.select(
        "epoch", "device_id", (pl.col("floor") + extra.cast(pl.Int64)).alias("reward")
    )
    paying = totals.filter(pl.col("total") > 0).get_column("epoch")
    unpaid = weights.filter(~pl.col("epoch").is_in(paying.implode())).select(
        "epoch", "device_id", pl.lit(0, pl.Int64).alias("reward")
    )
    return pl.concat([paid, unpaid])


def allocate_over_shards(shards: Sequence[pl.DataFrame], pool: int) -> list[pl.DataFrame]:
    """Each shard's rewards, the exchanges above run in this process: what a distributed
    executor does with the per-shard steps spread over workers."""
    if pool < 0:
        raise ValueError(f"pool must not be negative, got {pool}")
    totals = add_totals([shard_totals(s) for s in shards])
    shared = [shares(s, totals, pool) for s in shards]
    boundaries = boundary_buckets([remainder_histogram(s) for s in shared], pool)
    cut = cutoffs([boundary_rows(s, boundaries) for s in shared], boundaries)
    return [shard_rewards(w, s, totals, cut) for w, s in zip(shards, shared, strict=True)]
