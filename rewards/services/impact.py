"""What confirming, editing or un-confirming an incident would change, before it does
(issue 17, item 4): the device-epochs regained and lost per day, the devices and the base
units moved, computed from one consistent read of the inputs with the incident as it is
and as it would be. Nothing is written and no snapshot version is made.

Only the epochs the incident touches (before or after the change, up to the end of its
recovery deadline) can change, so only the intervals near them are read: a day either side,
more than any grace or liveness timeout, so every gap that reaches into those epochs is
seen whole. A test checks the preview against the diff of real snapshot reruns.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy import Engine
from sqlmodel import Session

from rewards.archive import HeartbeatArchive
from rewards.core import (
    DEFAULT_YEARS,
    DiffSummary,
    SeasonPolicy,
    YearWindow,
    diff_rows,
    diff_suppliers,
    epoch_changes,
    epoch_days,
    epoch_sums,
    summarize,
    to_us,
)
from rewards.db.audit import current_head
from rewards.db.devices import metadata_history
from rewards.db.engine import consistent_read
from rewards.db.incidents import devices_of, incidents, incidents_frame, owners_of
from rewards.db.interval_reads import intervals_overlapping
from rewards.db.state import committed_pages, job_runs
from rewards.db.tables import Incident
from rewards.services.incidents import (
    IncidentError,
    UnknownIncident,
    check_window,
    stored_value,
)
from rewards.services.snapshot_runs import Inputs
from rewards.services.versions import incident_versions_of

CHANGES = ("confirm", "unconfirm", "edit")


@dataclass(frozen=True)
class Impact:
    """The preview: `per_day` is EPOCH_CHANGES of the touched epochs (with their UTC
    `day`), `rows` the device-epochs that would change (`diff_rows`), `suppliers` the
    suppliers whose reward would change (`diff_suppliers`, their rewards summed over the
    touched epochs only: the delta is the season's)."""

    incident_id: str
    change: str
    epochs: range
    per_day: pl.DataFrame
    rows: pl.DataFrame
    suppliers: pl.DataFrame
    summary: DiffSummary


def _hypothetical(row: Incident, change: str, edits: dict[str, Any] | None) -> Incident:
    """`row` as it would be after `change` (never added to a session)."""
    copy = Incident(**row.model_dump())
    for key, value in (edits or {}).items():
        setattr(copy, *stored_value(key, value))
    if change == "confirm":
        copy.status = "confirmed"
    elif change == "unconfirm":
        copy.status = "proposed"
    return copy


def _touched(policy: SeasonPolicy, *rows: Incident) -> range:
    """The season's epochs from the earliest start to the latest end plus deadline."""
    start_us, length = to_us(policy.start), policy.epoch_length_us
    lo = min(to_us(r.start) for r in rows)
    hi = max(to_us(r.end) + r.recovery_deadline_us for r in rows)
    first = max(0, (lo - start_us) // length)
    last = min(policy.epoch_count, -(-(hi - start_us) // length))
    return range(first, max(first, last))


def impact(
    engine: Engine,
    policy: SeasonPolicy,
    incident_id: str,
    change: str,
    *,
    edits: dict[str, Any] | None = None,
    archive: HeartbeatArchive | None = None,
    years: YearWindow = DEFAULT_YEARS,
) -> Impact:
    """What `change` (confirm, unconfirm or edit with `edits`: start, end,
    recovery_deadline, reason) would do to incident `incident_id`'s effect on rewards."""
    if change not in CHANGES:
        raise IncidentError(f"unknown change {change!r}: one of {', '.join(CHANGES)}")
    with consistent_read(engine) as (connection, session):
        stored = incidents(session)
        found = next((i for i in stored if i.id == incident_id), None)
        if found is None:
            raise UnknownIncident(f"no incident {incident_id!r}")
        then = _hypothetical(found, change, edits)
        check_window(then.start, then.end, years)
        asked = repr(sorted((edits or {}).items()))
        key = (id(engine), policy.policy_hash, incident_id, change, asked, _inputs_mark(session))
        with _kept_lock:
            if key in _kept:
                return _kept[key]
        epochs = _touched(policy, found, then)
        margin = policy.epoch_length_us
        intervals = intervals_overlapping(
            connection,
            lo_us=to_us(policy.start) + epochs.start * policy.epoch_length_us - margin,
            hi_us=to_us(policy.start) + epochs.stop * policy.epoch_length_us + margin,
        )
        sides = []
        for rows in (stored, [then if i.id == incident_id else i for i in stored]):
            confirmed = incidents_frame([i for i in rows if i.status == "confirmed"])
            versions = incident_versions_of(connection, confirmed, intervals, policy, archive)
            sides.append((confirmed, versions))
        history = metadata_history(session)
    devices, owners = devices_of(history), owners_of(history)
    before, after = (
        Inputs(intervals, confirmed, versions, devices, owners).rows(policy, epochs)
        for confirmed, versions in sides
    )
    made = _compared(incident_id, change, epochs, policy, before, after)
    with _kept_lock:
        _kept[key] = made
        while len(_kept) > KEPT:
            _kept.pop(next(iter(_kept)))
    return made


KEPT = 4  # previews per process: a preview's pages and CSV reuse it
_kept: dict[tuple[object, ...], Impact] = {}
_kept_lock = threading.Lock()


def _inputs_mark(session: Session) -> tuple[object, ...]:
    """What changes whenever an input of the preview may have: the audit log's head (every
    incident decision, metadata revert or publication), the pages ingested per stream, and
    the newest job run (a rebuild of intervals, a refresh)."""
    runs = job_runs(session, limit=1)
    return (
        current_head(session).hash,
        committed_pages(session, "devices"),
        committed_pages(session, "heartbeats"),
        runs[0].id if runs else None,
    )


def _compared(
    incident_id: str,
    change: str,
    epochs: range,
    policy: SeasonPolicy,
    before: pl.DataFrame,
    after: pl.DataFrame,
) -> Impact:
    rows = diff_rows(before, after)
    suppliers = diff_suppliers(*(_owner_sums(r) for r in (before, after)))
    per_day = epoch_changes(rows, epoch_sums(before), epoch_sums(after)).with_columns(
        day=epoch_days(policy.start, policy.epoch_length_us)
    )
    return Impact(incident_id, change, epochs, per_day, rows, suppliers, summarize(rows, suppliers))


def _owner_sums(rows: pl.DataFrame) -> pl.DataFrame:
    return (
        rows.filter(pl.col("owner_id").is_not_null())
        .group_by("owner_id")
        .agg(pl.col("reward").sum())
    )
