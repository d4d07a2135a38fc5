"""Eligibility views in the database: a header and one compressed JSON document per owner."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from sqlalchemy import Connection, delete, select
from sqlmodel import Session, col

from rewards.db.bulk import load_frame
from rewards.db.tables import EligibilityDeviceDocument, EligibilityDocument, EligibilityView


@dataclass(frozen=True)
class ViewHeader:
    """A view's header as read (a plain value: no ORM session needed to use it)."""

    id: int
    season: str
    as_of: datetime
    epochs: int
    input_fingerprint: str
    policy_hash: str
    code_version: str
    rows: int
    owners: int
    job_run_id: int | None
    computed_at: datetime


class CorruptView(RuntimeError):
    """A stored document does not match the hash recorded with it."""


def insert(
    session: Session,
    header: EligibilityView,
    documents: Iterable[pl.DataFrame],
    devices: Iterable[pl.DataFrame] = (),
) -> EligibilityView:
    """Store a view, its documents (PACKED_DOCUMENTS frames) and its device documents
    (PACKED_DEVICE_DOCUMENTS frames), inserted as they come, in the caller's transaction."""
    session.add(header)
    session.flush()
    for table, frames in ((EligibilityDocument, documents), (EligibilityDeviceDocument, devices)):
        for frame in frames:
            # view_id as Int32: the column is an INTEGER (a binary COPY sends the exact type)
            rows = frame.select(pl.lit(header.id, pl.Int32).alias("view_id"), pl.all())
            load_frame(session.connection(), table.__tablename__, rows)
    return header


def latest(connection: Connection, season: str) -> ViewHeader | None:
    """The season's newest view."""
    table = EligibilityView.__table__  # type: ignore[attr-defined]
    row = connection.execute(
        select(table).where(table.c.season == season).order_by(table.c.id.desc()).limit(1)
    ).first()
    # read on every supplier request: plain columns, no ORM session
    return None if row is None else ViewHeader(**row._mapping)


def read_document(connection: Connection, view_id: int, owner_id: str) -> tuple[int, bytes]:
    """(rows, JSON array) of `owner_id`'s device-epochs in the view; (0, b"[]") when the
    owner has none. Raises CorruptView."""
    found = connection.execute(
        select(
            col(EligibilityDocument.rows),
            col(EligibilityDocument.sha256),
            col(EligibilityDocument.document),
        ).where(
            col(EligibilityDocument.view_id) == view_id,
            col(EligibilityDocument.owner_id) == owner_id,
        )
    ).first()
    if found is None:
        return 0, b"[]"
    rows, digest, data = found
    if hashlib.sha256(data).hexdigest() != digest:
        raise CorruptView(f"eligibility view {view_id}: a document's SHA-256 does not match")
    return int(rows), zlib.decompress(data)


def device_states(connection: Connection, view_id: int, owner_id: str) -> list[tuple[str, str]]:
    """(device_id, states) of each device `owner_id` had in the view, by device_id."""
    table = EligibilityDeviceDocument
    found = connection.execute(
        select(col(table.device_id), col(table.states))
        .where(col(table.view_id) == view_id, col(table.owner_id) == owner_id)
        .order_by(col(table.device_id))
    )
    return [(str(d), str(s)) for d, s in found]


def read_device_document(
    connection: Connection, view_id: int, owner_id: str, device_id: str
) -> bytes | None:
    """The JSON array of `device_id`'s rows while `owner_id` had it; None when they never
    did. Raises CorruptView."""
    table = EligibilityDeviceDocument
    found = connection.execute(
        select(col(table.sha256), col(table.document)).where(
            col(table.view_id) == view_id,
            col(table.owner_id) == owner_id,
            col(table.device_id) == device_id,
        )
    ).first()
    if found is None:
        return None
    digest, data = found
    if hashlib.sha256(data).hexdigest() != digest:
        raise CorruptView(f"eligibility view {view_id}: a device document's SHA-256 does not match")
    return zlib.decompress(data)


def prune(session: Session, season: str, keep: int) -> int:
    """Delete all but the season's `keep` newest views; returns how many were deleted."""
    ids = list(
        session.scalars(
            select(col(EligibilityView.id))
            .where(col(EligibilityView.season) == season)
            .order_by(col(EligibilityView.id).desc())
            .offset(keep)
        )
    )
    if ids:
        for table in (EligibilityDocument, EligibilityDeviceDocument):
            session.execute(delete(table).where(col(table.view_id).in_(ids)))
        session.execute(delete(EligibilityView).where(col(EligibilityView.id).in_(ids)))
    return len(ids)
