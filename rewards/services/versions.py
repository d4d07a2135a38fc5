"""Which agent_version each device ran when a version-scoped incident began (DESIGN 4.5),
without every raw heartbeat: the database keeps those only for the settlement window and
the archive holds the rest (DESIGN 8). The core needs the intervals and the heartbeats of
one liveness timeout before each such incident's start; this module fetches the latter
from both stores (a heartbeat in both is one heartbeat by DESIGN 4.1)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from sqlalchemy import Connection

from rewards.archive import HeartbeatArchive
from rewards.core import HEARTBEATS, SeasonPolicy, empty, incident_versions_near, to_us
from rewards.db.heartbeats import heartbeats_between


def incident_versions_of(
    connection: Connection,
    confirmed: pl.DataFrame,
    intervals: pl.DataFrame,
    policy: SeasonPolicy,
    archive: HeartbeatArchive | None,
    device_id: str | None = None,
) -> pl.DataFrame:
    """INCIDENT_VERSIONS of the `confirmed` incidents (INCIDENTS) for the devices of
    `intervals` (all stored, or one device's with `device_id`)."""
    near = heartbeats_near(connection, confirmed, policy, archive, device_id)
    return incident_versions_near(confirmed, intervals, near, policy)


def heartbeats_near(
    connection: Connection,
    confirmed: pl.DataFrame,
    policy: SeasonPolicy,
    archive: HeartbeatArchive | None,
    device_id: str | None = None,
) -> pl.DataFrame:
    """HEARTBEATS of one liveness timeout before each version-scoped incident of
    `confirmed` begins, from the database and the archive (every device's, or one's)."""
    scoped = confirmed.filter(pl.col("scope_version_below").is_not_null())
    near = [empty(HEARTBEATS)]
    one_us = timedelta(microseconds=1)
    timeout = timedelta(microseconds=policy.liveness_timeout_us)
    for start in scoped.get_column("start").unique().sort():
        near.append(
            heartbeats_between(
                connection,
                after_us=to_us(start - timeout),
                until_us=to_us(start),
                device_id=device_id,
            )
        )
        if archive is not None:
            archived = archive.heartbeats(start - timeout + one_us, start + one_us)
            if device_id is not None:
                archived = archived.filter(pl.col("device_id") == device_id)
            near.append(archived)
    return pl.concat(near)
