"""The device registry and its metadata history (DESIGN 7): versions are never overwritten.

A registry record valid from its `updated_at` becomes a version; it closes the version
before it and is closed by the one after it, whatever order records arrive in. A record
identical to the version in force is a redelivery and changes nothing. Every change of a
known device is written to the audit log.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

import polars as pl
from sqlalchemy import func, select
from sqlmodel import Session, col

from rewards.core import TIME, from_us
from rewards.db import audit as audit_log
from rewards.db.bulk import insert_missing, read_frame
from rewards.db.tables import Device, DeviceMetadata, OpenInterval, Supplier

_CONTENT = ("owner_id", "gpu_model", "gpu_count", "status")


def store_devices(
    session: Session, records: list[dict[str, Any]], *, now: datetime, actor: str, source: str
) -> int:
    """Add registry records (validated dicts) to the history; returns versions added."""
    if not records:
        return 0
    owners = {r["owner_id"]: r["updated_at"] for r in records}
    insert_missing(
        session.connection(),
        Supplier,
        "owner_id",
        [{"owner_id": o, "first_seen_at": now} for o in sorted(owners)],
    )
    insert_missing(
        session.connection(),
        Device,
        "device_id",
        [{"device_id": d, "first_seen_at": now} for d in sorted({r["device_id"] for r in records})],
    )

    ids = sorted({r["device_id"] for r in records})
    history: dict[str, list[DeviceMetadata]] = defaultdict(list)
    for version in session.scalars(
        select(DeviceMetadata).where(col(DeviceMetadata.device_id).in_(ids))
    ):
        history[version.device_id].append(version)

    added = 0
    audit: list[dict[str, Any]] = []
    for record in sorted(records, key=lambda r: (r["device_id"], r["updated_at"])):
        known = history[record["device_id"]]
        start = record["updated_at"]
        if any(v.valid_from == start for v in known):
            continue  # the same version delivered again (a reverted one stays reverted)
        versions = sorted((v for v in known if v.reverted_at is None), key=lambda v: v.valid_from)
        who = record.get("updated_by") or actor
        before = [v for v in versions if v.valid_from < start]
        after = [v for v in versions if v.valid_from > start]
        previous = before[-1] if before else None
        if previous and all(getattr(previous, k) == record[k] for k in _CONTENT):
            continue  # nothing changed
        version = DeviceMetadata(
            device_id=record["device_id"],
            owner_id=record["owner_id"],
            gpu_model=record["gpu_model"],
            gpu_count=record["gpu_count"],
            status=record["status"],
            registered_at=record["registered_at"],
            valid_from=start,
            valid_to=after[0].valid_from if after else None,
            actor=who,
            source=source,
            recorded_at=now,
        )
        session.add(version)
        if previous is not None:
            previous.valid_to = start
            session.add(previous)
            changed = {
                k: [getattr(previous, k), record[k]]
                for k in _CONTENT
                if getattr(previous, k) != record[k]
            }
            audit.append(
                {
                    "at": now,
                    "actor": who,
                    "action": "device.metadata.changed",
                    "subject": record["device_id"],
                    "details": json.dumps(
                        {"valid_from": start.isoformat(), "changed": changed}, sort_keys=True
                    ),
                }
            )
        history[record["device_id"]].append(version)
        added += 1
    session.flush()
    if audit:
        audit_log.append_many(session, audit)
    return added


def device_history(session: Session, device_id: str) -> list[DeviceMetadata]:
    """Every metadata version of a device, oldest first."""
    return list(
        session.scalars(
            select(DeviceMetadata)
            .where(col(DeviceMetadata.device_id) == device_id)
            .order_by(col(DeviceMetadata.valid_from))
        )
    )


def metadata_history(session: Session) -> pl.DataFrame:
    """Every version in force (not reverted) of every device's metadata: device_id,
    owner_id, gpu_model, status, valid_from, valid_to (no ORM objects; on PostgreSQL
    streamed by COPY, for fleets of 600,000 devices)."""
    if session.connection().dialect.name == "postgresql":
        micros = "(EXTRACT(EPOCH FROM {0}) * 1000000)::bigint AS {0}"
        frame = read_frame(
            session.connection(),
            "SELECT device_id, owner_id, gpu_model, status, "  # noqa: S608 - fixed names
            f"{micros.format('valid_from')}, {micros.format('valid_to')} FROM device_metadata "
            "WHERE reverted_at IS NULL",
            {},
            {
                "device_id": pl.String(),
                "owner_id": pl.String(),
                "gpu_model": pl.String(),
                "status": pl.String(),
                "valid_from": pl.Int64(),
                "valid_to": pl.Int64(),
            },
        )
        return frame.with_columns(pl.col("valid_from", "valid_to").cast(TIME))
    rows = session.execute(
        select(
            col(DeviceMetadata.device_id),
            col(DeviceMetadata.owner_id),
            col(DeviceMetadata.gpu_model),
            col(DeviceMetadata.status),
            col(DeviceMetadata.valid_from),
            col(DeviceMetadata.valid_to),
        ).where(col(DeviceMetadata.reverted_at).is_(None))
    ).all()
    return pl.DataFrame(
        [tuple(r) for r in rows],
        orient="row",
        schema={
            "device_id": pl.String(),
            "owner_id": pl.String(),
            "gpu_model": pl.String(),
            "status": pl.String(),
            "valid_from": TIME,
            "valid_to": TIME,
        },
    )


def changes_by(
    session: Session,
    *,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    device_id: str | None = None,
    after_id: int | None = None,
    limit: int | None = None,
) -> list[DeviceMetadata]:
    """Metadata versions (reverted ones too) by id, filtered by who wrote them, when they
    took effect ([since, until)) and device."""
    query = select(DeviceMetadata).order_by(col(DeviceMetadata.id))
    if actor is not None:
        query = query.where(col(DeviceMetadata.actor) == actor)
    if since is not None:
        query = query.where(col(DeviceMetadata.valid_from) >= since)
    if until is not None:
        query = query.where(col(DeviceMetadata.valid_from) < until)
    if device_id is not None:
        query = query.where(col(DeviceMetadata.device_id) == device_id)
    if after_id is not None:
        query = query.where(col(DeviceMetadata.id) > after_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def revert(
    session: Session,
    *,
    actor: str,
    since: datetime,
    until: datetime,
    by: str,
    now: datetime,
    reason: str,
) -> list[DeviceMetadata]:
    """Take every version `actor` wrote with valid_from in [since, until) out of force, in
    the caller's transaction; returns them. Each keeps its row, marked reverted, with an
    empty validity; the versions in force around it are chained again, so the one before
    it applies until the next one in force. Audited, one entry per version."""
    targets = [
        v
        for v in changes_by(session, actor=actor, since=since, until=until)
        if v.reverted_at is None
    ]
    audit: list[dict[str, Any]] = []
    for device in sorted({t.device_id for t in targets}):
        versions = device_history(session, device)
        undone = {t.id for t in targets if t.device_id == device}
        for version in versions:
            if version.id in undone:
                version.reverted_at, version.reverted_by = now, by
                version.valid_to = version.valid_from
                session.add(version)
        live = [v for v in versions if v.reverted_at is None]
        for current, following in zip(live, [*live[1:], None], strict=True):
            bound = following.valid_from if following else None
            if current.valid_to != bound:
                current.valid_to = bound
                session.add(current)
        for version in versions:
            if version.id not in undone:
                continue
            before = [v for v in live if v.valid_from < version.valid_from]
            restored = {k: getattr(before[-1], k) for k in _CONTENT} if before else None
            audit.append(
                {
                    "at": now,
                    "actor": by,
                    "action": "device.metadata.reverted",
                    "subject": device,
                    "details": json.dumps(
                        {
                            "valid_from": version.valid_from.isoformat(),
                            "written_by": version.actor,
                            "reverted": {k: getattr(version, k) for k in _CONTENT},
                            "in_force_again": restored,
                            "reason": reason,
                        },
                        sort_keys=True,
                    ),
                }
            )
    session.flush()
    if audit:
        audit_log.append_many(session, audit)
    return targets


def writes_per_second(
    session: Session, actor: str, since: datetime, until: datetime
) -> dict[int, int]:
    """How many metadata versions `actor` wrote in each second (by valid_from, seconds
    since the Unix epoch) of [since, until), reverted ones included."""
    counts: dict[int, int] = defaultdict(int)
    for moment in session.scalars(
        select(col(DeviceMetadata.valid_from)).where(
            col(DeviceMetadata.actor) == actor,
            col(DeviceMetadata.valid_from) >= since,
            col(DeviceMetadata.valid_from) < until,
        )
    ):
        counts[int(moment.timestamp())] += 1
    return dict(counts)


def _owned(
    owner_id: str, containing: str | None, seen_since_us: int | None = None, seen: bool = True
) -> list[Any]:
    """Conditions: in force, owned by `owner_id`, the id containing `containing` (an
    identifier's characters only, so nothing in it is a LIKE wildcard); with
    `seen_since_us`, only devices seen since then (`seen`) or not (not `seen`)."""
    where = [col(DeviceMetadata.owner_id) == owner_id, col(DeviceMetadata.valid_to).is_(None)]
    if containing:
        where.append(col(DeviceMetadata.device_id).contains(containing, autoescape=True))
    if seen_since_us is not None:
        recent = select(col(OpenInterval.device_id)).where(col(OpenInterval.end) >= seen_since_us)
        inside = col(DeviceMetadata.device_id).in_(recent)
        where.append(inside if seen else ~inside)
    return where


def owned_now(
    session: Session,
    owner_id: str,
    *,
    limit: int,
    after: str | None,
    containing: str | None = None,
    seen_since_us: int | None = None,
    seen: bool = True,
) -> list[DeviceMetadata]:
    """The versions in force of the devices `owner_id` owns, by device_id after `after`
    (those whose id contains `containing`, and seen since `seen_since_us` or not, when
    given)."""
    query = (
        select(DeviceMetadata)
        .where(*_owned(owner_id, containing, seen_since_us, seen))
        .order_by(col(DeviceMetadata.device_id))
        .limit(limit)
    )
    if after:
        query = query.where(col(DeviceMetadata.device_id) > after)
    return list(session.scalars(query))


def count_owned(
    session: Session,
    owner_id: str,
    containing: str | None = None,
    seen_since_us: int | None = None,
    seen: bool = True,
) -> int:
    """How many devices `owner_id` owns now (filtered as `owned_now`)."""
    where = _owned(owner_id, containing, seen_since_us, seen)
    query = select(func.count()).select_from(DeviceMetadata).where(*where)
    return int(session.execute(query).scalar_one())


def current_version(session: Session, device_id: str) -> DeviceMetadata | None:
    """The device's version in force, if any."""
    return session.scalars(
        select(DeviceMetadata).where(
            col(DeviceMetadata.device_id) == device_id, col(DeviceMetadata.valid_to).is_(None)
        )
    ).first()


def last_seen(session: Session, device_ids: list[str]) -> dict[str, datetime]:
    """The end of each device's latest online interval (its open one)."""
    if not device_ids:
        return {}
    rows = session.execute(
        select(col(OpenInterval.device_id), col(OpenInterval.end)).where(
            col(OpenInterval.device_id).in_(device_ids)
        )
    ).all()
    return {str(d): from_us(int(end)) for d, end in rows}


def unknown_devices(session: Session, device_ids: list[str]) -> list[str]:
    """Those of `device_ids` the registry has never reported, sorted."""
    wanted = sorted(set(device_ids))
    known: set[str] = set()
    for at in range(0, len(wanted), 1000):  # bounded IN lists on every database
        batch = wanted[at : at + 1000]
        known.update(
            session.scalars(select(col(Device.device_id)).where(col(Device.device_id).in_(batch)))
        )
    return [d for d in wanted if d not in known]
