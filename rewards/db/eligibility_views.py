"""Eligibility views in the database: a header and one Parquet part per owner bucket."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import Connection, delete, select
from sqlalchemy import insert as sql_insert
from sqlmodel import Session, col

from rewards.db.tables import EligibilityView, EligibilityViewPart


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
    buckets: int
    job_run_id: int | None
    computed_at: datetime


class CorruptView(RuntimeError):
    """A stored view part does not match the hash recorded with it."""


def pack(parts_of: Iterable[tuple[int, pl.DataFrame]]) -> list[dict[str, Any]]:
    """Each bucket's rows as a Parquet part with its SHA-256, ready for `insert`."""
    parts = []
    for number, part in parts_of:
        buffer = io.BytesIO()
        part.write_parquet(buffer, compression="lz4", statistics=False)
        data = buffer.getvalue()
        parts.append(
            {
                "bucket": number,
                "rows": part.height,
                "sha256": hashlib.sha256(data).hexdigest(),
                "data": data,
            }
        )
    return parts


def insert(
    session: Session, header: EligibilityView, parts: list[dict[str, Any]]
) -> EligibilityView:
    """Store a view and its packed parts in the caller's transaction."""
    session.add(header)
    session.flush()
    for low in range(0, len(parts), 500):
        chunk = [{**p, "view_id": header.id} for p in parts[low : low + 500]]
        session.connection().execute(sql_insert(EligibilityViewPart), chunk)
    return header


def latest(connection: Connection, season: str) -> ViewHeader | None:
    """The season's newest view."""
    table = EligibilityView.__table__  # type: ignore[attr-defined]
    row = connection.execute(
        select(table).where(table.c.season == season).order_by(table.c.id.desc()).limit(1)
    ).first()
    # read on every supplier request: plain columns, no ORM session
    return None if row is None else ViewHeader(**row._mapping)


def read_bucket(connection: Connection, view_id: int, bucket: int) -> pl.DataFrame | None:
    """A bucket's rows as stored; None when no owner falls in it. Raises CorruptView."""
    found = connection.execute(
        select(col(EligibilityViewPart.sha256), col(EligibilityViewPart.data)).where(
            col(EligibilityViewPart.view_id) == view_id,
            col(EligibilityViewPart.bucket) == bucket,
        )
    ).first()
    if found is None:
        return None
    digest, data = found
    if hashlib.sha256(data).hexdigest() != digest:
        raise CorruptView(f"eligibility view {view_id} bucket {bucket}: SHA-256 mismatch")
    return pl.read_parquet(io.BytesIO(data))


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
        session.execute(
            delete(EligibilityViewPart).where(col(EligibilityViewPart.view_id).in_(ids))
        )
        session.execute(delete(EligibilityView).where(col(EligibilityView.id).in_(ids)))
    return len(ids)
