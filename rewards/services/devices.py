"""Use cases for the device registry as the API shows it: a supplier's own devices, and the
public explorer's view of one device (never its owner)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlmodel import col

from rewards.core.frames import from_us
from rewards.db.engine import unit_of_work
from rewards.db.tables import DeviceMetadata, OnlineInterval


@dataclass(frozen=True)
class DeviceView:
    device_id: str
    gpu_model: str
    gpu_count: int
    status: str
    owner_id: str
    last_seen: datetime | None


def _last_seen(engine: Engine, device_ids: list[str]) -> dict[str, datetime]:
    if not device_ids:
        return {}
    with unit_of_work(engine) as session:
        rows = session.execute(
            select(col(OnlineInterval.device_id), func.max(OnlineInterval.end))
            .where(col(OnlineInterval.device_id).in_(device_ids))
            .group_by(col(OnlineInterval.device_id))
        ).all()
    return {str(d): from_us(int(end)) for d, end in rows}


def owned_devices(
    engine: Engine, owner_id: str, *, limit: int, after: str | None
) -> list[DeviceView]:
    """The devices `owner_id` owns now, by device_id, `limit` at a time after `after`."""
    query = (
        select(DeviceMetadata)
        .where(col(DeviceMetadata.owner_id) == owner_id, col(DeviceMetadata.valid_to).is_(None))
        .order_by(col(DeviceMetadata.device_id))
        .limit(limit)
    )
    if after:
        query = query.where(col(DeviceMetadata.device_id) > after)
    with unit_of_work(engine) as session:
        rows = list(session.scalars(query))
    seen = _last_seen(engine, [r.device_id for r in rows])
    return [
        DeviceView(
            r.device_id, r.gpu_model, r.gpu_count, r.status, r.owner_id, seen.get(r.device_id)
        )
        for r in rows
    ]


def public_device(engine: Engine, device_id: str) -> DeviceView | None:
    """A device's current metadata, or None when it is unknown."""
    with unit_of_work(engine) as session:
        row = session.scalars(
            select(DeviceMetadata).where(
                col(DeviceMetadata.device_id) == device_id, col(DeviceMetadata.valid_to).is_(None)
            )
        ).first()
    if row is None:
        return None
    seen = _last_seen(engine, [device_id]).get(device_id)
    return DeviceView(row.device_id, row.gpu_model, row.gpu_count, row.status, row.owner_id, seen)
