"""`device_epochs` shard by shard (DESIGN 8): devices to shards by Iceberg's bucket
transform, each shard through the unchanged pure core up to its weights, the rewards
allocated over every shard by small exchanges (core/shard_allocation.py). The result is
the same, byte for byte, as `device_epochs` over the whole fleet, for any shard count.
"""

from __future__ import annotations

import polars as pl

from rewards.core.frames import DEVICES, RESULTS, empty
from rewards.core.pipeline import unpaid_device_epochs
from rewards.core.policy import SeasonPolicy
from rewards.core.shard_allocation import allocate_over_shards
from rewards.core.shards import device_shards


def sharded_device_epochs(
    intervals: pl.DataFrame,
    policy: SeasonPolicy,
    *,
    shards: int,
    incidents: pl.DataFrame | None = None,
    devices: pl.DataFrame | None = None,
    incident_versions: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """`device_epochs`, computed `shards` devices' shards at a time."""
    devices = empty(DEVICES) if devices is None else devices
    known = pl.concat([intervals.get_column("device_id"), devices.get_column("device_id")]).unique()
    owner = pl.DataFrame({"device_id": known, "shard": device_shards(known, shards)})
    parts: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    for shard in range(shards):
        members = owner.filter(pl.col("shard") == shard).select("device_id")
        if members.is_empty():
            continue

        def mine(frame: pl.DataFrame, members: pl.DataFrame = members) -> pl.DataFrame:
            return frame.join(members, on="device_id", how="semi", maintain_order="left")

        parts.append(
            unpaid_device_epochs(
                mine(intervals),
                policy,
                incidents=incidents,
                devices=mine(devices),
                incident_versions=None if incident_versions is None else mine(incident_versions),
            )
        )
    if not parts:
        return empty(RESULTS)
    paid = allocate_over_shards([weights for _, weights in parts], policy.pool_per_epoch)
    results = [
        unpaid.drop("reward")
        .join(rewards, on=["epoch", "device_id"], how="left", maintain_order="left")
        .with_columns(pl.col("reward").fill_null(0))
        .select(list(RESULTS))
        for (unpaid, _), rewards in zip(parts, paid, strict=True)
    ]
    return pl.concat(results).sort("epoch", "device_id")
