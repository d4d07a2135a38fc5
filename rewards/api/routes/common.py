"""What the finance and admin routes share: snapshots as the API shows them."""

from __future__ import annotations

from rewards.api.schemas import SnapshotOut
from rewards.services.records import SnapshotRecord
from rewards.services.snapshots import label


def snapshot_out(s: SnapshotRecord) -> SnapshotOut:
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
