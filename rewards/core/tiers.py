"""Each device-epoch's tier weight and suspension, from the device metadata in force at the
epoch's start (DESIGN 4.7), as dense arrays over the pipeline's epoch-major keys."""

from __future__ import annotations

import numpy as np
import polars as pl

from rewards.core.frames import DEVICES, TIME
from rewards.core.policy import SeasonPolicy


def epoch_starts(policy: SeasonPolicy) -> pl.DataFrame:
    """epoch, epoch_start of every epoch of the season."""
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


def tiers_and_suspensions(
    devices: pl.DataFrame, policy: SeasonPolicy, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dense arrays (epoch-major keys) of tier weight and suspension at each epoch start."""
    default = policy.tier_weights["default"]

    def tier_of(model: pl.Expr) -> pl.Expr:
        return model.replace_strict(
            dict(policy.tier_weights), default=default, return_dtype=pl.Int64
        )

    # Most devices have one version valid throughout: their tier and suspension are the
    # same at every epoch start, so they are set once per device and repeated per epoch.
    # Only devices with a history go through the as-of join.
    spans = devices.group_by("device_id").agg(
        pl.len().alias("versions"),
        (pl.col("valid_from").is_null() | (pl.col("valid_from") <= policy.start))
        .all()
        .alias("from_start"),
        (pl.col("valid_to").is_null() | (pl.col("valid_to") >= policy.end)).all().alias("to_end"),
    )
    constant = spans.filter(
        (pl.col("versions") == 1) & pl.col("from_start") & pl.col("to_end")
    ).select("device_id")
    steady = devices.join(constant, on="device_id", how="semi")
    codes = steady.get_column("device_id").cast(pl.Int64).to_numpy()
    device_tier = np.full(count, default, dtype=np.int64)
    device_suspended = np.zeros(count, dtype=bool)
    device_tier[codes] = steady.select(tier_of(pl.col("gpu_model"))).to_series().to_numpy()
    device_suspended[codes] = steady.get_column("suspended").fill_null(False).to_numpy()
    tiers = np.tile(device_tier, policy.epoch_count)
    suspended = np.tile(device_suspended, policy.epoch_count)
    historic = devices.join(constant, on="device_id", how="anti")
    if historic.is_empty():
        return tiers, suspended
    grid = historic.select("device_id").unique().join(epoch_starts(policy), how="cross")
    meta = _metadata_at_epoch_start(grid, historic).with_columns(
        key=pl.col("epoch").cast(pl.Int64) * count + pl.col("device_id").cast(pl.Int64),
        tier=tier_of(pl.col("gpu_model")),
    )
    keys = meta.get_column("key").to_numpy()
    tiers[keys] = meta.get_column("tier").to_numpy()
    suspended[keys] = meta.get_column("suspended").to_numpy()
    return tiers, suspended
