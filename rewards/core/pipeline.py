"""Device-epoch results from intervals, policy, incidents and device metadata (DESIGN 4).

`device_epochs` is the composition; each step is a pure function of its own module. Every
device known (from intervals or the device metadata) gets a row for every epoch.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from rewards.core.allocation import allocate
from rewards.core.epochs import clip_to_epochs, longest_uncounted
from rewards.core.frames import (
    DEVICES,
    INCIDENTS,
    INTERVALS,
    RESULTS,
    TIME,
    check_frame,
    empty,
)
from rewards.core.gaps import bridge_gaps, gaps
from rewards.core.incidents import credited_windows, union_windows
from rewards.core.policy import SeasonPolicy


def _exact_div(expr: pl.Expr, divisor: int) -> pl.Expr:
    """expr / divisor as a correctly rounded float.

    Polars' float division is not always correctly rounded (77,759,999,999 / 1e6 came out
    as 77759.99999899999); numpy's is IEEE division, so reported seconds read exactly.
    """
    return expr.map_batches(
        lambda s: pl.Series(s.name, np.true_divide(s.cast(pl.Float64).to_numpy(), divisor)),
        return_dtype=pl.Float64,
    )


REASONS = ("SUSPENDED", "ELIGIBLE", "NO_HEARTBEATS", "BELOW_MIN_UPTIME")
US = 1_000_000


def _epochs(policy: SeasonPolicy) -> pl.DataFrame:
    return pl.DataFrame(
        {"epoch": list(range(policy.epoch_count))}, schema={"epoch": pl.Int64}
    ).with_columns(
        epoch_start=pl.lit(policy.start).cast(TIME)
        + pl.duration(microseconds=pl.col("epoch") * policy.epoch_length_us)
    )


def _metadata_at_epoch_start(grid: pl.DataFrame, devices: pl.DataFrame) -> pl.DataFrame:
    """gpu_model and suspended of the version valid at each epoch start (none: null)."""
    versions = (
        devices.select(list(DEVICES))
        .with_columns(pl.col("valid_from").fill_null(pl.lit(0).cast(TIME)))
        .sort("valid_from")
    )
    matched = grid.sort("epoch_start").join_asof(
        versions,
        left_on="epoch_start",
        right_on="valid_from",
        by="device_id",
        strategy="backward",
        check_sortedness=False,  # sorted by valid_from above, hence within each device too
    )
    current = pl.col("valid_to").is_null() | (pl.col("valid_to") > pl.col("epoch_start"))
    return matched.with_columns(
        gpu_model=pl.when(current).then("gpu_model"),
        suspended=pl.when(current).then("suspended").fill_null(False),
    ).drop("valid_from", "valid_to")


def device_epochs(
    intervals: pl.DataFrame,
    policy: SeasonPolicy,
    *,
    incidents: pl.DataFrame | None = None,
    devices: pl.DataFrame | None = None,
    incident_versions: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One RESULTS row per known device and season epoch, sorted by epoch then device_id.

    `incidents` must hold confirmed incidents only; `devices` is metadata history (DEVICES);
    `incident_versions` is required when an incident is scoped by agent version.
    """
    check_frame(intervals, INTERVALS, "intervals")
    incidents = empty(INCIDENTS) if incidents is None else incidents
    devices = empty(DEVICES) if devices is None else devices
    check_frame(devices, DEVICES, "devices")

    iv = intervals.select(list(INTERVALS)).with_columns(
        pl.col("start").cast(pl.Int64), pl.col("end").cast(pl.Int64)
    )
    marked = bridge_gaps(gaps(iv), policy)
    windows = credited_windows(marked, incidents, policy, incident_versions)

    def segment(frame: pl.DataFrame, s: str, e: str, kind: str) -> pl.DataFrame:
        return frame.select(
            "device_id", pl.col(s).alias("s"), pl.col(e).alias("e"), pl.lit(kind).alias("kind")
        )

    segments = pl.concat(
        [
            segment(iv, "start", "end", "online"),
            segment(marked.filter("bridged"), "g0", "g1", "bridged"),
            segment(union_windows(windows), "c0", "c1", "credited"),
        ]
    )
    pieces = clip_to_epochs(segments, policy)
    length = pl.col("e") - pl.col("s")
    sums = pieces.group_by("device_id", "epoch").agg(
        length.filter(pl.col("kind") == "online").sum().alias("online_us"),
        length.filter(pl.col("kind") == "bridged").sum().alias("bridged_us"),
        length.filter(pl.col("kind") == "credited").sum().alias("credited_us"),
    )
    # Incidents are named in an epoch only where their own window credited time in it.
    attributions = (
        clip_to_epochs(
            windows.select(
                "device_id", pl.col("c0").alias("s"), pl.col("c1").alias("e"), "incident_id"
            ),
            policy,
        )
        .group_by("device_id", "epoch")
        .agg(pl.col("incident_id").unique().sort().alias("crediting_incidents"))
    )
    bridges = (
        marked.filter(pl.col("epoch").is_not_null())
        .group_by("device_id", "epoch")
        .agg(
            pl.col("bridged").sum().cast(pl.Int64).alias("bridges_used"),
            pl.col("denied").sum().cast(pl.Int64).alias("bridges_denied"),
        )
    )
    longest = longest_uncounted(pieces, policy)

    known = pl.concat([iv.select("device_id"), devices.select("device_id")]).unique()
    grid = known.join(_epochs(policy), how="cross")
    grid = _metadata_at_epoch_start(grid, devices)
    zero = pl.lit(0, pl.Int64)
    table = (
        grid.join(sums, on=["device_id", "epoch"], how="left")
        .join(bridges, on=["device_id", "epoch"], how="left")
        .join(longest, on=["device_id", "epoch"], how="left")
        .join(attributions, on=["device_id", "epoch"], how="left")
        .with_columns(
            pl.col(
                "online_us", "bridged_us", "credited_us", "bridges_used", "bridges_denied"
            ).fill_null(zero),
            pl.col("longest_uncounted_us").fill_null(policy.epoch_length_us),
            pl.col("crediting_incidents").fill_null(pl.lit([], pl.List(pl.String))),
        )
        .with_columns(counted_us=pl.col("online_us") + pl.col("bridged_us") + pl.col("credited_us"))
    )
    ratio = policy.min_uptime_ratio
    # The ratio is exact: counted time (whole µs) qualifies when it reaches the exact
    # threshold ratio x L, i.e. the smallest whole number of µs at or above it.
    threshold_us = -((-ratio.numerator * policy.epoch_length_us) // ratio.denominator)
    reached = pl.col("counted_us") >= threshold_us
    table = table.with_columns(
        eligible=~pl.col("suspended") & reached,
        reason=pl.when(pl.col("suspended"))
        .then(pl.lit("SUSPENDED"))
        .when(reached)
        .then(pl.lit("ELIGIBLE"))
        .when(pl.col("counted_us") == 0)
        .then(pl.lit("NO_HEARTBEATS"))
        .otherwise(pl.lit("BELOW_MIN_UPTIME")),
        tier=pl.col("gpu_model").replace_strict(
            dict(policy.tier_weights),
            default=policy.tier_weights["default"],
            return_dtype=pl.Int64,
        ),
    )
    weights = table.filter("eligible").select(
        "epoch",
        "device_id",
        (pl.col("counted_us").cast(pl.Int128) * pl.col("tier")).alias("weight"),
    )
    rewards = allocate(weights, policy.pool_per_epoch)
    return (
        table.join(rewards, on=["epoch", "device_id"], how="left")
        .with_columns(
            pl.col("reward").fill_null(zero),
            _exact_div(pl.col("online_us"), US).alias("online_s"),
            _exact_div(pl.col("bridged_us"), US).alias("bridged_s"),
            _exact_div(pl.col("credited_us"), US).alias("credited_s"),
            _exact_div(pl.col("counted_us"), policy.epoch_length_us).alias("uptime_ratio"),
            # exact in integers (ratio x L - counted, scaled by the ratio's denominator),
            # then one conversion to seconds
            _exact_div(
                pl.max_horizontal(
                    pl.lit(0, pl.Int128),
                    pl.lit(ratio.numerator * policy.epoch_length_us, pl.Int128)
                    - pl.col("counted_us").cast(pl.Int128) * ratio.denominator,
                ),
                ratio.denominator * US,
            ).alias("shortfall_s"),
            _exact_div(pl.col("longest_uncounted_us"), US).alias("longest_uncounted_gap_s"),
        )
        .select(list(RESULTS))
        .sort("epoch", "device_id")
    )


def epoch_payouts(results: pl.DataFrame, policy: SeasonPolicy) -> pl.DataFrame:
    """Per epoch: eligible devices, pool, amount paid, and a note when nothing was paid."""
    return (
        results.group_by("epoch", maintain_order=True)
        .agg(
            pl.col("eligible").sum().alias("eligible_devices"),
            pl.col("reward").sum().alias("paid"),
        )
        .with_columns(
            pool=pl.lit(policy.pool_per_epoch),
            note=pl.when(pl.col("eligible_devices") == 0)
            .then(pl.lit("no eligible device: nothing paid"))
            .when(pl.col("paid") == 0)
            .then(pl.lit("all eligible weights are zero: nothing paid")),
        )
        .sort("epoch")
    )


__all__ = ["REASONS", "device_epochs", "epoch_payouts"]
