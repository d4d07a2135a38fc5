"""Storing a batch of heartbeats and keeping the online intervals up to date with it.

The database stages the batch and hands back what is stored near it; the core applies the
rules (one heartbeat per device and time, DESIGN 4.1; conflicts counted; intervals
merged, DESIGN 4.2); the database stores the result. All of it in the caller's
transaction, so a page, its intervals and its cursor commit together.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from sqlalchemy import Connection

from rewards.core import (
    INTERVALS,
    SeasonPolicy,
    conflicting_heartbeats,
    merge_intervals,
    unique_heartbeats,
)
from rewards.db.heartbeats import (
    any_stored_between,
    open_intervals_touched,
    put_intervals,
    stage_heartbeats,
    stored_at_stage,
    take_closed_intervals_near,
    upsert_stage,
)


@dataclass(frozen=True)
class StoredBatch:
    """What storing a batch did: rows inserted or replaced by a winning duplicate, and
    heartbeats that disagreed with another of the same (device_id, observed_at), in the
    batch or stored before."""

    stored: int
    conflicting: int


KEEP_ALL = -(2**63)  # a `kept_from_us` before any heartbeat: the database keeps them all


def store_heartbeats(
    connection: Connection,
    heartbeats: pl.DataFrame,
    policy: SeasonPolicy,
    *,
    received_at_us: int,
    kept_from_us: int = KEEP_ALL,
) -> StoredBatch:
    """Fold a batch of heartbeats (HEARTBEATS) into the online intervals and upsert those
    observed at or after `kept_from_us` as raw rows (older ones live only in the heartbeat
    archive, DESIGN 8), in the caller's transaction; counts the heartbeats that conflict
    with one in the batch or stored (for ingest metrics).

    `stored` counts the raw rows inserted or replaced plus the batch's distinct heartbeats
    before `kept_from_us`: those are the archive's, where a re-delivery cannot be told
    from a new heartbeat without reading it back."""
    batch = unique_heartbeats(heartbeats)
    if batch.is_empty():
        return StoredBatch(0, 0)
    touch = (  # in device order, the stored rows' index is walked in order (2x faster)
        batch.group_by("device_id")
        .agg(
            lo=pl.col("observed_at").min().dt.epoch("us"),
            hi=pl.col("observed_at").max().dt.epoch("us"),
        )
        .sort("device_id")
    )
    observed_us = batch.get_column("observed_at").dt.epoch("us")
    archived_only = int((observed_us < kept_from_us).sum())
    lo, hi = int(touch.get_column("lo").min()), int(touch.get_column("hi").max())  # type: ignore[arg-type]
    if archived_only < batch.height or any_stored_between(connection, lo_us=lo, hi_us=hi):
        stage_heartbeats(connection, batch)
        conflicting = conflicting_heartbeats(heartbeats, stored_at_stage(connection))
        stored = archived_only + upsert_stage(
            connection, received_at_us=received_at_us, kept_from_us=kept_from_us
        )
    else:  # nothing to keep and nothing stored to meet: no stage (a window of 0, DESIGN 8)
        conflicting = conflicting_heartbeats(heartbeats, heartbeats.clear())
        stored = archived_only
    opened = open_intervals_touched(connection, touch)
    # only heartbeats before a device's open interval can reach a closed one: late ones
    late = opened.filter(pl.col("lo") < pl.col("start").dt.epoch("us"))
    closed = take_closed_intervals_near(
        connection,
        late,
        liveness_timeout_us=policy.liveness_timeout_us,
        heartbeat_period_us=policy.heartbeat_period_us,
    )
    nearby = pl.concat([opened.select(list(INTERVALS)), closed])
    put_intervals(connection, merge_intervals(nearby, batch, policy))
    return StoredBatch(stored, conflicting)
