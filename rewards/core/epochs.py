"""Clipping counted time to epochs (DESIGN 4.6). Times are integer µs since the epoch."""

from __future__ import annotations

import polars as pl

from rewards.core.frames import to_us
from rewards.core.policy import SeasonPolicy


def clip_to_epochs(segments: pl.DataFrame, policy: SeasonPolicy) -> pl.DataFrame:
    """Each segment (device_id, s, e, kind) split at epoch boundaries and clipped to the
    season: device_id, epoch, kind, s, e (µs), only the non-empty pieces."""
    start, length = to_us(policy.start), policy.epoch_length_us
    end = start + policy.epoch_count * length
    inside = segments.filter((pl.col("e") > start) & (pl.col("s") < end)).with_columns(
        s=pl.max_horizontal("s", pl.lit(start)), e=pl.min_horizontal("e", pl.lit(end))
    )
    first = (pl.col("s") - start) // length
    last = (pl.col("e") - 1 - start) // length
    return (
        inside.with_columns(epoch=pl.int_ranges(first, last + 1, dtype=pl.Int64))
        .explode("epoch")
        .with_columns(
            s=pl.max_horizontal("s", start + pl.col("epoch") * length),
            e=pl.min_horizontal("e", start + (pl.col("epoch") + 1) * length),
        )
        .filter(pl.col("e") > pl.col("s"))
    )


def longest_uncounted(pieces: pl.DataFrame, policy: SeasonPolicy) -> pl.DataFrame:
    """Per device and epoch with counted pieces, the longest stretch of the epoch that no
    piece covers (µs): device_id, epoch, longest_uncounted_us. Pieces must be disjoint."""
    start, length = to_us(policy.start), policy.epoch_length_us
    epoch_start = start + pl.col("epoch") * length
    ordered = pieces.sort("device_id", "epoch", "s")
    before = pl.col("s") - pl.col("e").shift(1).over("device_id", "epoch").fill_null(epoch_start)
    return (
        ordered.with_columns(stretch=before)
        .group_by("device_id", "epoch")
        .agg(
            pl.max_horizontal(
                pl.col("stretch").max(), epoch_start.first() + length - pl.col("e").max()
            ).alias("longest_uncounted_us")
        )
    )
