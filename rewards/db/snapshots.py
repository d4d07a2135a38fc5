"""Snapshots in the database: the header, its device-epoch rows, payouts and epoch totals."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, collate, delete, func, select, update
from sqlalchemy import insert as sql_insert
from sqlmodel import Session, col

from rewards.core import EPOCH_TOTALS, SNAPSHOT_ROWS, SUPPLIERS, slices
from rewards.db.audit import Head
from rewards.db.bulk import load_frame, read_frame
from rewards.db.tables import Snapshot, SnapshotEpoch, SnapshotPart, SnapshotPayout

PART_ROWS = 100_000  # device-epochs per Parquet part: ~3,300 devices of a season, ~2 MB, so
# reading one device (its pages) reads 2 MB, not a 20,000-device fleet's 17 MB


class CorruptSnapshot(RuntimeError):
    """Stored snapshot content does not match the hash recorded with it."""


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
    rows: Iterable[pl.DataFrame],
    suppliers: pl.DataFrame,
    epochs: pl.DataFrame,
) -> Snapshot:
    """Store a draft and its content in the caller's transaction. `rows` in canonical
    order, a frame at a time (any split): the parts are `PART_ROWS` slices of their
    concatenation, each written as it fills, so a season's rows are never in memory at once."""
    session.add(header)
    session.flush()
    assert header.id is not None
    key = pl.lit(header.id, dtype=pl.Int64).alias("snapshot_id")
    connection = session.connection()
    load_frame(connection, "snapshot_epochs", epochs.select(key, *EPOCH_TOTALS))
    leaves = ["commitment"] if "commitment" in suppliers.columns else []
    load_frame(connection, "snapshot_payouts", suppliers.select(key, *SUPPLIERS, *leaves))
    for number, chunk in enumerate(slices(rows, PART_ROWS)):
        buffer = io.BytesIO()
        chunk.select(list(SNAPSHOT_ROWS)).write_parquet(buffer, compression="zstd", statistics=True)
        data = buffer.getvalue()
        part = {
            "snapshot_id": header.id,
            "part": number,
            "rows": chunk.height,
            "first_device_id": chunk.item(0, "device_id"),
            "last_device_id": chunk.item(chunk.height - 1, "device_id"),
            "sha256": hashlib.sha256(data).hexdigest(),
            "data": data,
        }
        connection.execute(sql_insert(SnapshotPart), [part])
    return header


def read_rows(connection: Connection, snapshot_id: int) -> pl.DataFrame:
    """A snapshot's rows (SNAPSHOT_ROWS) in canonical order; raises CorruptSnapshot when a
    part no longer matches its hash."""
    frames = list(row_parts(connection, snapshot_id))
    if not frames:
        return pl.DataFrame(schema=dict(SNAPSHOT_ROWS))
    return pl.concat(frames)


def row_parts(connection: Connection, snapshot_id: int) -> Iterator[pl.DataFrame]:
    """A snapshot's rows (SNAPSHOT_ROWS) in canonical order, a stored part at a time, each
    checked against its hash (CorruptSnapshot when it no longer matches)."""
    for data in _checked_parts(connection, snapshot_id):
        yield pl.read_parquet(io.BytesIO(data)).select(list(SNAPSHOT_ROWS))


def device_rows(connection: Connection, snapshot_id: int, device_id: str) -> pl.DataFrame:
    """One device's rows of a snapshot (SNAPSHOT_ROWS, by epoch): only the parts whose
    device range holds it are read (one or two of a season's), each checked against its
    hash (CorruptSnapshot when it no longer matches)."""
    first, last = col(SnapshotPart.first_device_id), col(SnapshotPart.last_device_id)
    holds = [first <= device_id, last >= device_id]
    if connection.dialect.name == "postgresql":  # byte order, as the parts are cut (SQLite's is)
        holds = [collate(first, "C") <= device_id, collate(last, "C") >= device_id]
    frames = [
        pl.scan_parquet(io.BytesIO(data))
        .filter(pl.col("device_id") == device_id)
        .select(list(SNAPSHOT_ROWS))
        .collect()
        for data in _checked_parts(connection, snapshot_id, *holds)
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=dict(SNAPSHOT_ROWS))


def _checked_parts(connection: Connection, snapshot_id: int, *where: Any) -> Iterator[bytes]:
    """The Parquet bytes of a snapshot's parts (those matching `where`), in order, one at
    a time, each checked against its SHA-256 (CorruptSnapshot when it no longer matches)."""
    found = connection.execute(
        select(col(SnapshotPart.part), col(SnapshotPart.sha256), col(SnapshotPart.data))
        .where(col(SnapshotPart.snapshot_id) == snapshot_id, *where)
        .order_by(col(SnapshotPart.part))
        .execution_options(yield_per=1)
    )
    for part, digest, data in found:
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptSnapshot(f"snapshot {snapshot_id} part {part}: SHA-256 mismatch")
        yield data


def payout_of(connection: Connection, snapshot_id: int, owner_id: str) -> dict[str, int] | None:
    """An owner's payout in a snapshot (reward, devices, eligible_device_epochs), or None."""
    found = connection.execute(
        select(
            col(SnapshotPayout.reward),
            col(SnapshotPayout.devices),
            col(SnapshotPayout.eligible_device_epochs),
        ).where(
            col(SnapshotPayout.snapshot_id) == snapshot_id,
            col(SnapshotPayout.owner_id) == owner_id,
        )
    ).first()
    if found is None:
        return None
    return {"reward": found[0], "devices": found[1], "eligible_device_epochs": found[2]}


def read_suppliers(connection: Connection, snapshot_id: int) -> pl.DataFrame:
    """SUPPLIERS of a snapshot with each leaf's `commitment` (null before leaf format 2)."""
    schema = {**SUPPLIERS, "commitment": pl.String()}
    columns = ", ".join(f'"{c}"' for c in schema)
    return read_frame(
        connection,
        f"SELECT {columns} FROM snapshot_payouts WHERE snapshot_id = :id",  # noqa: S608
        {"id": snapshot_id},
        schema,
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
    session: Session, snapshot: Snapshot, *, by: str, now: datetime, audit_head: Head
) -> Snapshot | None:
    """Publish `snapshot` and supersede the season's previous published one (returned);
    `audit_head` is the audit log's head with the publication recorded."""
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
            published_audit_entries=audit_head.entries,
            published_audit_hash=audit_head.hash,
        )
    )
    return previous


def discard(session: Session, snapshot: Snapshot) -> None:
    """Delete a draft and its content (the database refuses it for any other status)."""
    for table in (SnapshotPart, SnapshotPayout, SnapshotEpoch):
        session.execute(delete(table).where(col(table.snapshot_id) == snapshot.id))
    session.execute(delete(Snapshot).where(col(Snapshot.id) == snapshot.id))
