"""Synthetic online intervals of a large fleet over a season, with realistic gap patterns:
restarts (new boot, 1-12 min), blips (same boot, 2-6 min), upgrades (new version, 1-5 min),
long outages (1-9 h), late joiners and leavers; plus the April-2024-style mass drop at the
forced upgrade on day 5, most devices returning within two days on a new version."""

from __future__ import annotations

import numpy as np
import polars as pl

from rewards.core.frames import INTERVALS, TIME, to_us
from rewards.core.policy import SeasonPolicy

MIN = 60_000_000
HOUR = 60 * MIN


def fleet_intervals(policy: SeasonPolicy, devices: int, seed: int = 1) -> pl.DataFrame:
    """An INTERVALS frame of `devices` devices over the season."""
    rng = np.random.default_rng(seed)
    start, end = to_us(policy.start), to_us(policy.end)
    per_device = rng.poisson(7, devices) + 1
    n = int(per_device.sum())
    device = np.repeat(np.arange(devices), per_device)
    kind = rng.choice(4, n, p=[0.5, 0.25, 0.1, 0.15])  # restart, blip, upgrade, outage
    length = np.select(
        [kind == 0, kind == 1, kind == 2],
        [
            rng.integers(MIN, 12 * MIN, n),
            rng.integers(2 * MIN, 6 * MIN, n),
            rng.integers(MIN, 5 * MIN, n),
        ],
        rng.integers(HOUR, 9 * HOUR, n),
    )
    g0 = rng.integers(start, end, n)
    # the forced upgrade: 98% of devices go down at day 5, 08:05 and return on a new version
    forced = start + 5 * 24 * HOUR + 8 * HOUR + 5 * MIN
    drop = rng.random(devices) < 0.98
    back = (rng.gamma(2.0, 8 * HOUR, devices) + 5 * MIN).astype(np.int64)
    gaps = pl.DataFrame(
        {
            "device": np.concatenate([device, np.arange(devices)[drop]]),
            "g0": np.concatenate([g0, forced - rng.integers(0, MIN, devices)[drop]]),
            "len": np.concatenate([length, back[drop]]),
            "kind": np.concatenate([kind, np.full(int(drop.sum()), 2)]),
        }
    ).sort("device", "g0")
    # keep gaps apart (at least two minutes of uptime between them)
    gaps = (
        gaps.with_columns(nxt=pl.col("g0").shift(-1).over("device"))
        .with_columns(g1=pl.min_horizontal(pl.col("g0") + pl.col("len"), pl.col("nxt") - 2 * MIN))
        .filter(pl.col("g1") - pl.col("g0") > 100_000_000)
    )
    gaps = gaps.with_columns(
        boot=(pl.col("kind") != 1).cast(pl.Int64).cum_sum().over("device"),
        version=(pl.col("kind") == 2).cast(pl.Int64).cum_sum().over("device"),
    )
    first = rng.integers(start - 2 * HOUR, start + 2 * HOUR, devices)
    joiners = rng.random(devices) < 0.05
    first = np.where(joiners, rng.integers(start, end - 24 * HOUR, devices), first)
    last = np.where(
        rng.random(devices) < 0.05, rng.integers(start + 24 * HOUR, end, devices), end + HOUR
    )
    bounds = pl.DataFrame({"device": np.arange(devices), "first": first, "last": last})
    # intervals: [previous gap end (or first), gap start) and a final one to `last`
    iv = (
        gaps.join(bounds, on="device")
        .with_columns(
            s=pl.col("g1").shift(1).over("device").fill_null(pl.col("first")),
            boot_before=pl.col("boot").shift(1).over("device").fill_null(0),
            version_before=pl.col("version").shift(1).over("device").fill_null(0),
        )
        .select("device", "s", pl.col("g0").alias("e"), "boot_before", "version_before", "last")
    )
    tail = gaps.group_by("device").agg(
        pl.col("g1").last(), pl.col("boot").last(), pl.col("version").last()
    )
    tail = tail.join(bounds, on="device").select(
        "device",
        pl.col("g1").alias("s"),
        pl.col("last").alias("e"),
        pl.col("boot").alias("boot_before"),
        pl.col("version").alias("version_before"),
        "last",
    )
    allv = (
        pl.concat([iv, tail])
        .join(bounds.select("device", "first"), on="device")
        .filter(
            (pl.col("s") >= pl.col("first"))
            & (pl.col("e") <= pl.col("last"))
            & (pl.col("e") > pl.col("s"))
        )
    )
    name = pl.lit("gpu-") + pl.col("device").cast(pl.String).str.zfill(7)
    return (
        allv.select(
            name.alias("device_id"),
            pl.col("s").cast(TIME).alias("start"),
            pl.col("e").cast(TIME).alias("end"),
            (name + "-" + pl.col("boot_before").cast(pl.String)).alias("first_boot_id"),
            ("1." + pl.col("version_before").cast(pl.String)).alias("first_agent_version"),
            (name + "-" + pl.col("boot_before").cast(pl.String)).alias("last_boot_id"),
            ("1." + pl.col("version_before").cast(pl.String)).alias("last_agent_version"),
        )
        .sort("device_id", "start")
        .select(list(INTERVALS))
    )
