"""What the finance and admin routes share: snapshots as the API shows them, and refs."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy import Engine

from rewards.api.schemas import (
    SnapshotOut,
)
from rewards.db.tables import Snapshot


def snapshot_out(s: Snapshot) -> SnapshotOut:
    from rewards.services.snapshots import label

    return SnapshotOut(
        snapshot=label(s),
        season=s.season,
        version=s.version,
        status=s.status,
        epochs=[s.epoch_first, s.epoch_last],
        total_paid=s.total_paid,
        suppliers=s.suppliers,
        content_hash=s.content_hash,
        merkle_root=s.merkle_root,
        created_at=s.created_at,
        published_at=s.published_at,
    )


def resolve_or_404(engine: Engine, ref: str, season: str) -> Snapshot:
    from rewards.services.snapshots import SnapshotError, resolve

    try:
        return resolve(engine, ref, season)
    except SnapshotError:
        raise HTTPException(404, "no such snapshot") from None
