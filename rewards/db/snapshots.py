"""Snapshots in the database: the header, its device-epoch rows, payouts and epoch totals."""

from __future__ import annotations

from datetime import datetime

import polars as pl
from sqlalchemy import Connection, delete, func, select, update
from sqlmodel import Session, col

from rewards.core.snapshots import EPOCH_TOTALS, SNAPSHOT_ROWS, SUPPLIERS
from rewards.db.bulk import load_frame, read_frame
from rewards.db.tables import Snapshot, SnapshotEpoch, SnapshotPayout, SnapshotRow

# The stored row: SNAPSHOT_ROWS without epoch_start (the policy gives it) plus the key.
STORED_ROWS = {c: t for c, t in SNAPSHOT_ROWS.items() if c != "epoch_start"}


def latest(session: Session, season: str) -> Snapshot | None:
    """The season's newest snapshot, whatever its status."""
    return session.scalars(
        select(Snapshot)
        .where(col(Snapshot.season) == season)
        .order_by(col(Snapshot.version).desc())
    ).first()


def published(session: Session, season: str) -> Snapshot | None:
    """The season's published snapshot, if any."""
    return session.scalars(
        select(Snapshot).where(col(Snapshot.season) == season, col(Snapshot.status) == "published")
    ).first()


def find(session: Session, season: str, version: int) -> Snapshot | None:
    return session.scalars(
        select(Snapshot).where(col(Snapshot.season) == season, col(Snapshot.version) == version)
    ).first()


def listing(session: Session, season: str | None = None) -> list[Snapshot]:
    """Snapshots, newest first, optionally of one season."""
    query = select(Snapshot).order_by(col(Snapshot.season), col(Snapshot.version).desc())
    if season:
        query = query.where(col(Snapshot.season) == season)
    return list(session.scalars(query))


def next_version(session: Session, season: str) -> int:
    found = session.execute(
        select(func.max(Snapshot.version)).where(col(Snapshot.season) == season)
    ).scalar_one()
    return int(found or 0) + 1


def insert(
    session: Session,
    header: Snapshot,
    rows: pl.DataFrame,
    suppliers: pl.DataFrame,
    epochs: pl.DataFrame,
) -> Snapshot:
    """Store a draft and its content in the caller's transaction."""
    session.add(header)
    session.flush()
    assert header.id is not None
    key = pl.lit(header.id, dtype=pl.Int64).alias("snapshot_id")
    connection = session.connection()
    load_frame(connection, "snapshot_epochs", epochs.select(key, *EPOCH_TOTALS))
    load_frame(connection, "snapshot_payouts", suppliers.select(key, *SUPPLIERS))
    load_frame(connection, "snapshot_rows", rows.select(key, *STORED_ROWS))
    return header


def read_rows(connection: Connection, snapshot_id: int) -> pl.DataFrame:
    """A snapshot's stored rows (STORED_ROWS), sorted by device_id, epoch in byte order."""
    columns = ", ".join(f'"{c}"' for c in STORED_ROWS)
    frame = read_frame(
        connection,
        f"SELECT {columns} FROM snapshot_rows WHERE snapshot_id = :id",  # noqa: S608
        {"id": snapshot_id},
        dict(STORED_ROWS),
    )
    return frame.sort("device_id", "epoch")


def read_suppliers(connection: Connection, snapshot_id: int) -> pl.DataFrame:
    columns = ", ".join(f'"{c}"' for c in SUPPLIERS)
    return read_frame(
        connection,
        f"SELECT {columns} FROM snapshot_payouts WHERE snapshot_id = :id",  # noqa: S608
        {"id": snapshot_id},
        dict(SUPPLIERS),
    ).sort("owner_id")


def read_epochs(connection: Connection, snapshot_id: int) -> pl.DataFrame:
    columns = ", ".join(f'"{c}"' for c in EPOCH_TOTALS)
    return read_frame(
        connection,
        f"SELECT {columns} FROM snapshot_epochs WHERE snapshot_id = :id",  # noqa: S608
        {"id": snapshot_id},
        dict(EPOCH_TOTALS),
    ).sort("epoch")


def mark_published(
    session: Session, snapshot: Snapshot, *, by: str, now: datetime
) -> Snapshot | None:
    """Publish `snapshot` and supersede the season's previous published one (returned)."""
    previous = published(session, snapshot.season)
    if previous is not None:
        session.execute(
            update(Snapshot).where(col(Snapshot.id) == previous.id).values(status="superseded")
        )
    session.execute(
        update(Snapshot)
        .where(col(Snapshot.id) == snapshot.id)
        .values(
            status="published",
            published_at=now,
            published_by=by,
            supersedes_id=previous.id if previous else None,
        )
    )
    return previous


def discard(session: Session, snapshot: Snapshot) -> None:
    """Delete a draft and its content (the database refuses it for any other status)."""
    for table in (SnapshotRow, SnapshotPayout, SnapshotEpoch):
        session.execute(delete(table).where(col(table.snapshot_id) == snapshot.id))
    session.execute(delete(Snapshot).where(col(Snapshot.id) == snapshot.id))
