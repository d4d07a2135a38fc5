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

from rewards.core import SeasonPolicy, conflicting_heartbeats, merge_intervals, unique_heartbeats
from rewards.db.heartbeats import (
    insert_intervals,
    stage_heartbeats,
    stored_at_stage,
    take_intervals_near_stage,
    upsert_stage,
)


@dataclass(frozen=True)
class StoredBatch:
    """What storing a batch did: rows inserted or replaced by a winning duplicate, and
    heartbeats that disagreed with another of the same (device_id, observed_at), in the
    batch or stored before."""

    stored: int
    conflicting: int


def store_heartbeats(
    connection: Connection, heartbeats: pl.DataFrame, policy: SeasonPolicy, *, received_at_us: int
) -> StoredBatch:
    """Upsert a batch of heartbeats (HEARTBEATS) and fold it into the online intervals, in
    the caller's transaction; counts the heartbeats that conflict (for ingest metrics)."""
    batch = unique_heartbeats(heartbeats)
    if batch.is_empty():
        return StoredBatch(0, 0)
    stage_heartbeats(connection, batch)
    conflicting = conflicting_heartbeats(heartbeats, stored_at_stage(connection))
    stored = upsert_stage(connection, received_at_us=received_at_us)
    nearby = take_intervals_near_stage(
        connection,
        liveness_timeout_us=policy.liveness_timeout_us,
        heartbeat_period_us=policy.heartbeat_period_us,
    )
    insert_intervals(connection, merge_intervals(nearby, batch, policy))
    return StoredBatch(stored, conflicting)
