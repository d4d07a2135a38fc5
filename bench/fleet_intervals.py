"""Synthetic online intervals of a large fleet over a season at a real fleet's density
(about 2.5 online intervals a device-day): restarts inside the grace (new boot, 1-14 min) and
beyond it (16-90 min), blips (same boot, 2-6 min), upgrades (new version, 1-5 min), outages
of hours (1-9 h), 13% flaky devices with four times the gaps (more than three bridgeable
gaps in many of their days), late joiners and leavers; and the April-2024 forced upgrade on
day 5, when 95% of the fleet goes silent and returns on a new version over 48 hours."""

from __future__ import annotations

import numpy as np
import polars as pl

from rewards.core.frames import INTERVALS, TIME, to_us
from rewards.core.policy import SeasonPolicy

MIN = 60_000_000
HOUR = 60 * MIN


def fleet_intervals(
    policy: SeasonPolicy, devices: int, seed: int = 1, first_device: int = 0
) -> pl.DataFrame:
    """An INTERVALS frame of `devices` devices over the season, at the density of a real fleet
    (DESIGN 8: two to three online intervals a device-day; `density` measures it), their
    ids numbered from `first_device` (a larger fleet is made block by block)."""
    rng = np.random.default_rng(seed)
    start, end = to_us(policy.start), to_us(policy.end)
    days = (end - start) / (24 * HOUR)
    # gaps a day: 13% of devices are flaky (eight a day: several bridgeable restarts in a
    # day, more than three in some), the rest about two (the daily restart, a blip)
    flaky = rng.random(devices) < 0.13
    per_device = rng.poisson(np.where(flaky, 8.0, 2.2) * days) + 1
    n = int(per_device.sum())
    device = np.repeat(np.arange(devices), per_device)
    # restart inside the grace, restart beyond it, blip (same boot), upgrade, outage of hours
    kind = rng.choice(5, n, p=[0.42, 0.08, 0.3, 0.08, 0.12])
    length = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [
            rng.integers(MIN, 14 * MIN, n),
            rng.integers(16 * MIN, 90 * MIN, n),
            rng.integers(2 * MIN, 6 * MIN, n),
            rng.integers(MIN, 5 * MIN, n),
        ],
        rng.integers(HOUR, 9 * HOUR, n),
    )
    kind = np.where(kind == 1, 0, kind)  # a restart is a restart, whatever its length
    kind = np.where(kind == 3, 2, np.where(kind == 2, 1, kind))  # 0 restart, 1 blip, 2 upgrade
    kind = np.where(length >= HOUR, 3, kind)  # 3 outage: a new boot, the same version
    g0 = rng.integers(start, end, n)
    # the forced upgrade (April 2024): 95% of the fleet goes silent in the minute before
    # day 5, 08:05 and returns on a new version over the next 48 hours
    forced = start + 5 * 24 * HOUR + 8 * HOUR + 5 * MIN
    drop = rng.random(devices) < 0.95
    back = np.minimum(rng.gamma(2.0, 8 * HOUR, devices) + 5 * MIN, 48 * HOUR).astype(np.int64)
    gaps = pl.DataFrame(
        {
            "device": np.concatenate([device, np.arange(devices)[drop]]),
            "g0": np.concatenate([g0, forced - rng.integers(0, MIN, devices)[drop]]),
            "len": np.concatenate([length, back[drop]]),
            "kind": np.concatenate([kind, np.full(int(drop.sum()), 2)]),
        }
    ).sort("device", "g0")
    # gaps that overlap, or leave under two minutes online between them, are one gap (an
    # outage swallows the blips inside it; the forced upgrade's silence swallows everything)
    ends = pl.col("g0") + pl.col("len")
    gaps = (
        gaps.with_columns(reach=ends.cum_max().shift(1).over("device"))
        .with_columns(
            run=(pl.col("reach").is_null() | (pl.col("g0") > pl.col("reach") + 2 * MIN))
            .cast(pl.Int64)
            .cum_sum()
            .over("device")
        )
        .group_by("device", "run")
        .agg(
            pl.col("g0").min(),
            ends.max().alias("g1"),
            (pl.col("kind") != 1).any().alias("reboot"),
            (pl.col("kind") == 2).any().alias("upgrade"),
        )
        .filter(pl.col("g1") - pl.col("g0") > 100_000_000)  # shorter is no gap (liveness)
        .sort("device", "g0")
    )
    gaps = gaps.with_columns(
        boot=pl.col("reboot").cast(pl.Int64).cum_sum().over("device"),
        version=pl.col("upgrade").cast(pl.Int64).cum_sum().over("device"),
    )
    first = rng.integers(start - 2 * HOUR, start + 2 * HOUR, devices)
    joiners = rng.random(devices) < 0.07  # late joiners arrive in the season's first half
    first = np.where(joiners, rng.integers(start, (start + end) // 2, devices), first)
    last = np.where(  # leavers go in its second half
        rng.random(devices) < 0.05, rng.integers((start + end) // 2, end, devices), end + HOUR
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
    name = pl.lit("gpu-") + (pl.col("device") + first_device).cast(pl.String).str.zfill(7)
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


def density(intervals: pl.DataFrame | pl.LazyFrame, policy: SeasonPolicy) -> float:
    """Online intervals a device-day: the benchmark's data must be at a real fleet's."""
    days = (to_us(policy.end) - to_us(policy.start)) / (24 * HOUR)
    rows, devices = (
        intervals.lazy()
        .select(pl.len(), pl.col("device_id").n_unique())
        .collect(engine="streaming")
        .row(0)
    )
    return int(rows) / (int(devices) * days)
