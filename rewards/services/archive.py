"""Use cases of the heartbeat archive (DESIGN 8): open it, keep it compact and within its
retention, and read the heartbeats of a window back from it."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from rewards.archive import HeartbeatArchive, Upkeep


def open_archive(url: str) -> HeartbeatArchive:
    """The archive at `url` (a directory, or s3://bucket/prefix with the AWS environment's
    credentials and endpoint)."""
    return HeartbeatArchive(url)


def archive_upkeep(
    archive: HeartbeatArchive, *, now: datetime, keep: timedelta, vacuum: timedelta
) -> Upkeep:
    """Compact the archive's small files, sort each settled day by device (a day is
    settled once the next one has ended too: heartbeats a day late are rare), drop the days
    older than `keep` before `now` (retention applies to the archive explicitly), and
    vacuum files older than `vacuum`."""
    return archive.upkeep(
        keep_from=(now - keep).date(),
        vacuum_hours=int(vacuum.total_seconds() // 3600),
        sort_before=(now - timedelta(days=1)).date(),
    )


def archived_heartbeats(
    archive: HeartbeatArchive, start: datetime | None = None, end: datetime | None = None
) -> pl.DataFrame:
    """The heartbeats observed in [start, end), one per device and time (DESIGN 4.1)."""
    return archive.heartbeats(start, end)
