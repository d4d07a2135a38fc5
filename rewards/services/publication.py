"""Publishing a snapshot (DESIGN 5, 9): a draft becomes the season's published snapshot and
the previous one is superseded; going back to an older version is a rollback, refused
unless an admin overrides it with a reason, and audited with what it moves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from rewards.db import audit
from rewards.db import snapshots as store
from rewards.db.engine import unit_of_work
from rewards.db.tables import Snapshot
from rewards.services.records import SnapshotRecord
from rewards.services.runs import exclusive_run
from rewards.services.snapshots import (
    Diff,
    SnapshotConflict,
    SnapshotError,
    diff,
    label,
    record,
    resolve,
)


class RollbackRefused(SnapshotError):
    """Publishing would replace a newer published snapshot and no override was given."""

    kind = "rollback-refused"


@dataclass(frozen=True)
class Publication:
    """What publishing did: the snapshot as published and the one it superseded."""

    published: SnapshotRecord
    superseded: SnapshotRecord | None


def rollback_from(engine: Engine, snapshot: SnapshotRecord) -> SnapshotRecord | None:
    """The season's published snapshot when it is newer than `snapshot`, so that publishing
    `snapshot` would roll the season back (DESIGN 9); None when publishing moves forward."""
    with unit_of_work(engine) as session:
        current = store.published(session, snapshot.season)
        newer = current is not None and current.version > snapshot.version
        return record(current) if newer and current is not None else None


@dataclass(frozen=True)
class Preview:
    """What publishing a draft would do, before it is done: the published snapshot it
    would supersede (if any), what moves from that one to the draft, and whether it
    rolls the season back to an older version."""

    snapshot: SnapshotRecord
    current: SnapshotRecord | None
    moves: Diff | None
    rollback: bool


def preview(engine: Engine, ref: str, season: str) -> Preview:
    """The use case "what would publishing `ref` do" (SnapshotConflict unless a draft)."""
    snapshot = resolve(engine, ref, season)
    if snapshot.status != "draft":
        raise SnapshotConflict(
            f"{label(snapshot)} is {snapshot.status}: only a draft can be published"
        )
    with unit_of_work(engine) as session:
        found = store.published(session, snapshot.season)
        current = record(found) if found is not None else None
    moves = diff(engine, current, snapshot) if current is not None else None
    rollback = current is not None and current.version > snapshot.version
    return Preview(snapshot, current, moves, rollback)


def publish_ref(
    engine: Engine,
    ref: str,
    season: str,
    *,
    by: str,
    clock: Callable[[], datetime],
    lock_ttl: timedelta,
    rollback_reason: str | None = None,
) -> Publication:
    """The use case "publish this snapshot", by its ref: see `publish`."""
    snapshot = resolve(engine, ref, season)
    superseded = publish(
        engine,
        snapshot,
        by=by,
        clock=clock,
        lock_ttl=lock_ttl,
        rollback_reason=rollback_reason,
    )
    return Publication(resolve(engine, ref, season), superseded)


def publish(
    engine: Engine,
    snapshot: SnapshotRecord,
    *,
    by: str,
    clock: Callable[[], datetime],
    lock_ttl: timedelta,
    rollback_reason: str | None = None,
) -> SnapshotRecord | None:
    """Make a draft the season's published snapshot; returns the one it superseded.

    Publishing a version older than the published one is a rollback (DESIGN 9): refused
    with RollbackRefused unless `rollback_reason` says why; an allowed rollback is audited
    as `snapshot.rollback` with the reason and what it moves.
    """
    if snapshot.status != "draft":
        raise SnapshotConflict(
            f"{label(snapshot)} is {snapshot.status}: only a draft can be published"
        )
    reason = (rollback_reason or "").strip()
    newer = rollback_from(engine, snapshot)
    moves = diff(engine, newer, snapshot).summary if newer is not None and reason else None
    with (
        exclusive_run(
            engine,
            job_id=f"snapshot:{snapshot.season}",
            trigger="publish",
            clock=clock,
            ttl=lock_ttl,
        ),
        unit_of_work(engine) as session,
    ):
        current = session.get(Snapshot, snapshot.id)
        if current is None or current.status != "draft":
            raise SnapshotConflict(f"{label(snapshot)} is no longer a draft")
        replaced = store.published(session, snapshot.season)
        rollback = replaced is not None and replaced.version > current.version
        if rollback and replaced is not None and not reason:
            raise RollbackRefused(
                f"{label(snapshot)} is older than the published {label(record(replaced))}: "
                "publishing it would roll the season back; it needs an explicit rollback "
                "override and a reason"
            )
        if rollback and (newer is None or replaced is None or newer.id != replaced.id):
            raise SnapshotConflict("the published snapshot changed meanwhile: check and try again")
        details: dict[str, Any] = {
            "content_hash": snapshot.content_hash,
            "merkle_root": snapshot.merkle_root,
        }
        if rollback and moves is not None:
            details["reason"] = reason
            details["moves"] = {
                "device_epochs_changed": moves.device_epochs_changed,
                "device_epochs_regained": moves.device_epochs_regained,
                "device_epochs_lost": moves.device_epochs_lost,
                "suppliers_changed": moves.suppliers_changed,
                "moved": moves.moved,
            }
        details["supersedes"] = label(record(replaced)) if replaced else None
        head = audit.append(
            session,
            now=clock(),
            actor=by,
            action="snapshot.rollback" if rollback else "snapshot.publish",
            subject=label(snapshot),
            details=details,
        )
        previous = store.mark_published(session, current, by=by, now=clock(), audit_head=head)
        return record(previous) if previous is not None else None
