"""A device-epoch's outcome from its counted time (DESIGN 4.6-4.7): whether it is
eligible, why, how far short it fell and its uptime ratio, each rule one function over
columns of whole microseconds."""

from __future__ import annotations

import numpy as np
import polars as pl

from rewards.core.policy import SeasonPolicy

REASONS = ("SUSPENDED", "ELIGIBLE", "NO_HEARTBEATS", "BELOW_MIN_UPTIME")
US = 1_000_000


def exact_div(expr: pl.Expr, divisor: int) -> pl.Expr:
    """expr / divisor as a correctly rounded float.

    Polars' float division is not always correctly rounded (77,759,999,999 / 1e6 came out
    as 77759.99999899999); numpy's is IEEE division, so reported seconds read exactly.
    """
    return expr.map_batches(
        lambda s: pl.Series(s.name, np.true_divide(s.cast(pl.Float64).to_numpy(), divisor)),
        return_dtype=pl.Float64,
    )


def reached_minimum(counted_us: pl.Expr, policy: SeasonPolicy) -> pl.Expr:
    """Counted time reaches `min_uptime_ratio` x L, exactly (DESIGN 4.6): at least
    `policy.min_counted_us`."""
    return counted_us >= policy.min_counted_us


def eligibility(counted_us: pl.Expr, suspended: pl.Expr, policy: SeasonPolicy) -> pl.Expr:
    """Eligible (DESIGN 4.6): counted time reaches the minimum and the device was not
    suspended at the epoch start."""
    return ~suspended & reached_minimum(counted_us, policy)


def reasons(counted_us: pl.Expr, suspended: pl.Expr, policy: SeasonPolicy) -> pl.Expr:
    """The reason (DESIGN 4.7), the first that applies: SUSPENDED, ELIGIBLE, NO_HEARTBEATS
    (nothing counted), BELOW_MIN_UPTIME."""
    suspended_, eligible, silent, below = REASONS
    return (
        pl.when(suspended)
        .then(pl.lit(suspended_))
        .when(reached_minimum(counted_us, policy))
        .then(pl.lit(eligible))
        .when(counted_us == 0)
        .then(pl.lit(silent))
        .otherwise(pl.lit(below))
    )


def shortfall_s(counted_us: pl.Expr, policy: SeasonPolicy) -> pl.Expr:
    """max(0, ratio x L - counted) in seconds (DESIGN 4.6): exact in integers (scaled by
    the ratio's denominator), then one conversion to seconds."""
    ratio = policy.min_uptime_ratio
    return exact_div(
        pl.max_horizontal(
            pl.lit(0, pl.Int128),
            pl.lit(ratio.numerator * policy.epoch_length_us, pl.Int128)
            - counted_us.cast(pl.Int128) * ratio.denominator,
        ),
        ratio.denominator * US,
    )


def uptime_ratio(counted_us: pl.Expr, policy: SeasonPolicy) -> pl.Expr:
    """Counted time / L (DESIGN 4.6), correctly rounded."""
    return exact_div(counted_us, policy.epoch_length_us)
