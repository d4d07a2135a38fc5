"""Use cases for the device registry as the API shows it: a supplier's own devices, the
public explorer's view of one device (never its owner), and for admins the metadata history
and the revert of one actor's changes over a time range."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from rewards.core import from_us
from rewards.db.devices import (
    changes_by,
    count_owned,
    current_version,
    last_seen,
    owned_now,
    revert,
)
from rewards.db.engine import unit_of_work
from rewards.db.interval_reads import last_interval_end
from rewards.db.tables import DeviceMetadata
from rewards.services.errors import ServiceError


@dataclass(frozen=True)
class DeviceView:
    device_id: str
    gpu_model: str
    gpu_count: int
    status: str
    owner_id: str
    last_seen: datetime | None


def online(last_seen: datetime | None, newest: datetime | None, timeout_us: int) -> bool:
    """Seen within a liveness timeout of the newest heartbeat in the fleet (not of the
    clock, so a feed that stopped does not make every device look offline)."""
    if last_seen is None or newest is None:
        return False
    return last_seen >= newest - timedelta(microseconds=timeout_us)


@dataclass(frozen=True)
class OwnedPage:
    """A page of a supplier's devices: the devices, how many match in all, and the newest
    heartbeat in the fleet (what online is measured against)."""

    devices: list[DeviceView]
    total: int
    newest: datetime | None


def owned_devices(
    engine: Engine,
    owner_id: str,
    *,
    limit: int,
    after: str | None,
    containing: str | None = None,
    state: str | None = None,
    timeout_us: int = 0,
) -> OwnedPage:
    """The devices `owner_id` owns now, by device_id, `limit` at a time after `after`:
    only those whose id contains `containing`, and with `state` only those 'online' (seen
    within `timeout_us` of the newest heartbeat in the fleet: not of the clock, so a feed
    that stopped does not make every device look offline) or 'offline'."""
    with unit_of_work(engine) as session:
        newest = last_interval_end(session.connection())
        since = None
        if state in ("online", "offline"):
            since = (newest if newest is not None else 2**62) - timeout_us
        seen = state != "offline"
        rows = owned_now(
            session, owner_id, limit=limit, after=after, containing=containing,
            seen_since_us=since, seen=seen,
        )  # fmt: skip
        last = last_seen(session, [r.device_id for r in rows])
        total = count_owned(session, owner_id, containing, since, seen)
    devices = [
        DeviceView(
            r.device_id, r.gpu_model, r.gpu_count, r.status, r.owner_id, last.get(r.device_id)
        )
        for r in rows
    ]
    return OwnedPage(devices, total, from_us(newest) if newest is not None else None)


def newest_heartbeat(engine: Engine) -> datetime | None:
    """When the newest heartbeat stored anywhere in the fleet was seen (the end of the
    latest open interval): what "online now" is measured against, whatever the clock."""
    with unit_of_work(engine) as session:
        found = last_interval_end(session.connection())
    return None if found is None else from_us(found)


def owner_now(engine: Engine, device_id: str) -> str | None:
    """Who owns `device_id` now (None: nobody, or no such device)."""
    with unit_of_work(engine) as session:
        current = current_version(session, device_id)
        return None if current is None else current.owner_id


def public_device(engine: Engine, device_id: str) -> DeviceView | None:
    """A device's current metadata, or None when it is unknown."""
    with unit_of_work(engine) as session:
        row = current_version(session, device_id)
        if row is None:
            return None
        seen = last_seen(session, [device_id]).get(device_id)
    return DeviceView(row.device_id, row.gpu_model, row.gpu_count, row.status, row.owner_id, seen)


@dataclass(frozen=True)
class MetadataVersion:
    """One version of a device's metadata as admins see it."""

    id: int
    device_id: str
    owner_id: str
    gpu_model: str
    gpu_count: int
    status: str
    valid_from: datetime
    valid_to: datetime | None
    actor: str
    source: str
    recorded_at: datetime
    reverted_at: datetime | None
    reverted_by: str | None


def _version(v: DeviceMetadata) -> MetadataVersion:
    assert v.id is not None
    return MetadataVersion(
        v.id, v.device_id, v.owner_id, v.gpu_model, v.gpu_count, v.status, v.valid_from,
        v.valid_to, v.actor, v.source, v.recorded_at, v.reverted_at, v.reverted_by,
    )  # fmt: skip


def metadata_changes(
    engine: Engine,
    *,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    device_id: str | None = None,
    after_id: int | None = None,
    limit: int,
) -> list[MetadataVersion]:
    """Metadata versions by id: one device's history, or one actor's writes in a range."""
    with unit_of_work(engine) as session:
        found = changes_by(
            session,
            actor=actor,
            since=since,
            until=until,
            device_id=device_id,
            after_id=after_id,
            limit=limit,
        )
        return [_version(v) for v in found]


class RevertError(ServiceError, ValueError):
    """A revert request cannot be done; the message says why."""


def revert_changes(
    engine: Engine,
    *,
    actor: str,
    since: datetime,
    until: datetime,
    by: str,
    now: datetime,
    reason: str,
) -> list[MetadataVersion]:
    """Revert every metadata change `actor` made in [since, until) (one transaction,
    audited); the next snapshot run sees the metadata as it was before them."""
    if until <= since:
        raise RevertError("until must be after since")
    if by == actor:
        raise RevertError("an actor cannot revert its own changes")
    with unit_of_work(engine) as session:
        return [
            _version(v)
            for v in revert(
                session, actor=actor, since=since, until=until, by=by, now=now, reason=reason
            )
        ]
