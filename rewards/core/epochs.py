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


def same_group_as_previous(*keys: str) -> pl.Expr:
    """True where a row of a frame sorted by `keys` belongs to the same group as the row
    before it: a window over contiguous groups without the cost of `.over()`."""
    same = pl.lit(True)
    for key in keys:
        same = same & (pl.col(key) == pl.col(key).shift(1)).fill_null(False)
    return same
