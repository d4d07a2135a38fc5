"""Gaps between a device's consecutive intervals, and which of them are bridged (DESIGN 4.3,
4.4). Times here are integer microseconds since the Unix epoch."""

from __future__ import annotations

import polars as pl

from rewards.core.epochs import same_group_as_previous
from rewards.core.frames import sorted_by, to_us
from rewards.core.policy import SeasonPolicy


def gaps(intervals: pl.DataFrame) -> pl.DataFrame:
    """[g0, g1) between consecutive intervals of each device, and `restarted`: whether the
    boot_id or the agent_version differs between the last heartbeat before the gap and the
    first after it. Time before a device's first interval or after its last is not a gap.
    `intervals` as INTERVALS, µs times."""
    ordered = sorted_by(intervals, "device_id", "start")
    nxt = pl.col("device_id").shift(-1)
    return (
        ordered.select(
            "device_id",
            pl.col("end").alias("g0"),
            pl.col("start").shift(-1).alias("g1"),
            # compared here so the identifier strings go no further than this frame
            (
                (pl.col("last_boot_id") != pl.col("first_boot_id").shift(-1))
                | (pl.col("last_agent_version") != pl.col("first_agent_version").shift(-1))
            ).alias("restarted"),
            (nxt == pl.col("device_id")).alias("same_device"),
        )
        .filter(pl.col("same_device"))
        .drop("same_device")
    )


def bridge_gaps(gaps_us: pl.DataFrame, policy: SeasonPolicy) -> pl.DataFrame:
    """`gaps_us` with `epoch` (of g0; null outside the season), `bridged` and `denied`.

    A gap is bridgeable when it is at most `restart_grace` long and the boot_id or the
    agent_version changed across it. Per device and epoch the earliest
    `max_bridges_per_epoch` bridgeable gaps are bridged, later ones denied. A gap starting
    outside the season's epochs counts against no epoch's limit, so it is bridged.
    """
    start, length, count = to_us(policy.start), policy.epoch_length_us, policy.epoch_count
    epoch = (pl.col("g0") - start) // length
    bridgeable = ((pl.col("g1") - pl.col("g0")) <= policy.restart_grace_us) & pl.col("restarted")
    marked = gaps_us.with_columns(
        epoch=pl.when((epoch >= 0) & (epoch < count)).then(epoch).otherwise(None),
        bridgeable=bridgeable,
    )
    marked = sorted_by(marked, "device_id", "g0")
    # Rank among the bridgeable gaps of the same device and epoch, which are contiguous once
    # sorted: a running count that restarts at each group (cheaper than `.over()`). Gaps
    # outside the season (null epoch) are never limited, so their grouping does not matter.
    flag = pl.col("bridgeable").cast(pl.Int64)
    restart = ~same_group_as_previous("device_id", "epoch_key")
    rank = pl.col("rank")
    return (  # one lazy query: polars fuses the steps instead of materialising each
        marked.lazy()
        .with_columns(epoch_key=pl.col("epoch").fill_null(-1))
        .with_columns(running=flag.cum_sum())
        .with_columns(
            rank=pl.col("running") - pl.when(restart).then(pl.col("running") - flag).forward_fill()
        )
        .with_columns(
            bridged=pl.col("bridgeable")
            & (pl.col("epoch").is_null() | (rank <= policy.max_bridges_per_epoch)),
            denied=pl.col("bridgeable")
            & pl.col("epoch").is_not_null()
            & (rank > policy.max_bridges_per_epoch),
        )
        .drop("bridgeable", "restarted", "epoch_key", "running", "rank")
        .collect()
    )
