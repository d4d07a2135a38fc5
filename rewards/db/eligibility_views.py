"""Eligibility views in the database: a header and one Parquet part per owner bucket."""

from __future__ import annotations

import hashlib
import io

import polars as pl
from sqlalchemy import Connection, delete, select
from sqlalchemy import insert as sql_insert
from sqlmodel import Session, col

from rewards.core.eligibility_view import VIEW_ROWS, buckets
from rewards.db.tables import EligibilityView, EligibilityViewPart


class CorruptView(RuntimeError):
    """A stored view part does not match the hash recorded with it."""


def insert(session: Session, header: EligibilityView, rows: pl.DataFrame) -> EligibilityView:
    """Store a view and its bucketed rows in the caller's transaction."""
    session.add(header)
    session.flush()
    parts = []
    for number, part in buckets(rows.select(list(VIEW_ROWS)), header.buckets):
        buffer = io.BytesIO()
        part.write_parquet(buffer, compression="lz4", statistics=False)
        data = buffer.getvalue()
        parts.append(
            {
                "view_id": header.id,
                "bucket": number,
                "rows": part.height,
                "sha256": hashlib.sha256(data).hexdigest(),
                "data": data,
            }
        )
        if len(parts) == 500:
            session.connection().execute(sql_insert(EligibilityViewPart), parts)
            parts = []
    if parts:
        session.connection().execute(sql_insert(EligibilityViewPart), parts)
    return header


def latest(connection: Connection, season: str) -> EligibilityView | None:
    """The season's newest view."""
    with Session(bind=connection, expire_on_commit=False) as session:
        view = session.scalars(
            select(EligibilityView)
            .where(col(EligibilityView.season) == season)
            .order_by(col(EligibilityView.id).desc())
            .limit(1)
        ).first()
        if view is not None:
            session.expunge(view)
        return view


def read_bucket(connection: Connection, view_id: int, bucket: int) -> pl.DataFrame:
    """A bucket's rows (VIEW_ROWS); empty when no owner falls in it. Raises CorruptView."""
    found = connection.execute(
        select(col(EligibilityViewPart.sha256), col(EligibilityViewPart.data)).where(
            col(EligibilityViewPart.view_id) == view_id,
            col(EligibilityViewPart.bucket) == bucket,
        )
    ).first()
    if found is None:
        return pl.DataFrame(schema=dict(VIEW_ROWS))
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
