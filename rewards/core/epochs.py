"""Epochs: clipping counted time to them (DESIGN 4.6) and choosing which ones a snapshot
covers: those closed and settled (DESIGN 10) or a range a person typed (DESIGN 5).
Times are integer µs since the Unix epoch.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from rewards.core.frames import to_us
from rewards.core.policy import SeasonPolicy


def clip_to_epochs(segments: pl.DataFrame, policy: SeasonPolicy) -> pl.DataFrame:
    """Each segment (device_id, s, e, kind) split at epoch boundaries and clipped to the
    season: device_id, epoch, kind, s, e (µs), only the non-empty pieces, in no particular
    order. Most segments (intervals of hours, gaps of minutes) lie in one epoch; only the
    others are split, so the common case costs no list column."""
    start, length = to_us(policy.start), policy.epoch_length_us
    end = start + policy.epoch_count * length
    inside = segments.filter((pl.col("e") > start) & (pl.col("s") < end)).with_columns(
        s=pl.max_horizontal("s", pl.lit(start)), e=pl.min_horizontal("e", pl.lit(end))
    )
    first = (pl.col("s") - start) // length
    last = (pl.col("e") - 1 - start) // length
    inside = inside.with_columns(epoch=first, _last=last)
    one = inside.filter(pl.col("epoch") == pl.col("_last")).drop("_last")
    split = (
        inside.filter(pl.col("epoch") != pl.col("_last"))
        .with_columns(epoch=pl.int_ranges(pl.col("epoch"), pl.col("_last") + 1, dtype=pl.Int64))
        .drop("_last")
        .explode("epoch")
        .with_columns(
            s=pl.max_horizontal("s", start + pl.col("epoch") * length),
            e=pl.min_horizontal("e", start + (pl.col("epoch") + 1) * length),
        )
    )
    return pl.concat(
        [one.filter(pl.col("e") > pl.col("s")), split.filter(pl.col("e") > pl.col("s"))]
    )


def same_group_as_previous(*keys: str) -> pl.Expr:
    """True where a row of a frame sorted by `keys` belongs to the same group as the row
    before it: a window over contiguous groups without the cost of `.over()`."""
    same = pl.lit(True)
    for key in keys:
        same = same & (pl.col(key) == pl.col(key).shift(1)).fill_null(False)
    return same


def closed_epochs(
    policy: SeasonPolicy, now: datetime, settlement_us: int, *, watermark: datetime | None
) -> range:
    """The epochs closed and settled (DESIGN 10): those whose end plus `settlement_us` is
    at or before both `now` and `watermark`, the latest observed_at of the ingested feed
    (None: nothing ingested, nothing closed). The wall clock alone never closes an epoch,
    so a feed outage does not snapshot epochs it left empty. range(0, k), possibly empty."""
    if watermark is None:
        return range(0)
    horizon = min(to_us(now), to_us(watermark))
    elapsed = horizon - to_us(policy.start) - settlement_us
    return range(max(0, min(policy.epoch_count, elapsed // policy.epoch_length_us)))


def parse_epoch_range(text: str, epoch_count: int) -> range:
    """'A:B' (both included) or 'A' as a range of epochs; ValueError naming the problem."""
    first, _, last = text.partition(":")
    try:
        a = int(first)
        b = int(last) if last else a
    except ValueError:
        raise ValueError(f"{text!r}: expected A:B, epoch numbers from 0, both included") from None
    if not 0 <= a <= b < epoch_count:
        raise ValueError(
            f"{text!r}: the season has epochs 0 to {epoch_count - 1}, and A must not exceed B"
        )
    return range(a, b + 1)


def epoch_days(start: datetime, epoch_length_us: int, column: str = "epoch") -> pl.Expr:
    """The UTC day (YYYY-MM-DD) on which each `column` epoch of a season starting at
    `start` begins: what the pages show instead of epoch numbers."""
    begins = pl.lit(start) + pl.duration(microseconds=pl.col(column) * epoch_length_us)
    return begins.dt.strftime("%Y-%m-%d")
