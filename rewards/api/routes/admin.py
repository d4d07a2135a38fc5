"""The admin's door: incidents, alerts, snapshot runs, diffs and publishing, device metadata
history and reverts, job runs. Every write is watched for surges and audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as FastPath
from pydantic import AwareDatetime

from rewards.api.auth import Principal
from rewards.api.deps import (
    Admin,
    Cursor,
    DeviceId,
    EngineDep,
    IncidentId,
    Limit,
    PolicyDep,
    SettingsDep,
    SnapshotQuery,
    SnapshotRef,
    writer,
)
from rewards.api.problems import TYPES, Problem
from rewards.api.routes.common import resolve_or_404, snapshot_out
from rewards.api.schemas import (
    INCIDENT_ID_PATTERN,
    AlertOut,
    DiffOut,
    IncidentEditIn,
    IncidentIn,
    IncidentOut,
    JobRunOut,
    MetadataPage,
    MetadataVersionOut,
    PublishIn,
    RevertIn,
    RevertOut,
    SnapshotOut,
    SnapshotRunIn,
    SnapshotRunOut,
)
from rewards.core import IDENTIFIER_PATTERN
from rewards.db.tables import Incident, Snapshot

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from rewards.core import DiffSummary, SeasonPolicy, YearWindow
    from rewards.services.incidents import UnknownDevices
    from rewards.services.snapshots import RunOutcome
    from rewards.settings import Settings

admin = APIRouter(prefix="/v1/admin", tags=["admin"])


def _incident(i: Incident) -> IncidentOut:
    return IncidentOut(
        id=i.id,
        start=i.start,
        end=i.end,
        recovery_deadline_s=i.recovery_deadline_us // 1_000_000,
        scope=i.scope,
        status=i.status,
        source=i.source,
        reason=i.reason,
    )


@admin.get("/incidents", response_model=list[IncidentOut])
def admin_incidents(
    who: Admin,
    engine: EngineDep,
    status: Annotated[str | None, Query(pattern="^(proposed|confirmed|dismissed)$")] = None,
    limit: Limit = 100,
    after: Annotated[str | None, Query(pattern=INCIDENT_ID_PATTERN)] = None,
) -> list[IncidentOut]:
    """Incidents, oldest start first; `status=proposed` lists what the detector proposes.
    For the next page pass the last one's id as `after`."""
    from rewards.services.incidents import list_incidents

    found = list_incidents(engine, status)
    if after is not None:
        ids = [i.id for i in found]
        found = found[ids.index(after) + 1 :] if after in ids else []
    return [_incident(i) for i in found[:limit]]


@admin.post("/incidents", response_model=IncidentOut, status_code=201)
def admin_declare(
    body: IncidentIn,
    who: Admin,
    engine: EngineDep,
    settings: SettingsDep,
    _: Annotated[Principal, Depends(writer("admin.incidents.declare"))],
) -> IncidentOut:
    """Declare an incident (confirmed at once; audited). 409 if the id is taken; 422 for a
    window outside the configured years or a scope naming unknown devices (listed)."""
    from rewards.services.incidents import IncidentError, IncidentExists, UnknownDevices, declare

    try:
        made = declare(
            engine,
            incident_id=body.id,
            start=body.start,
            end=body.end,
            recovery_deadline=timedelta(seconds=body.recovery_deadline_s),
            scope=body.scope.scope(),
            reason=body.reason,
            by=who.subject,
            now=datetime.now(UTC),
            years=settings.timestamp_years,
        )
    except IncidentExists:
        raise HTTPException(409, "an incident with this id exists") from None
    except UnknownDevices as exc:
        raise _unknown(exc) from None
    except IncidentError as exc:
        raise HTTPException(422, str(exc)) from None
    return _incident(made)


def _unknown(exc: UnknownDevices) -> Problem:
    return Problem(TYPES["invalid-request"], str(exc), unknown_device_ids=exc.device_ids)


@admin.patch("/incidents/{incident_id}", response_model=IncidentOut)
def admin_edit(
    incident_id: IncidentId,
    body: IncidentEditIn,
    who: Admin,
    engine: EngineDep,
    settings: SettingsDep,
    _: Annotated[Principal, Depends(writer("admin.incidents.edit"))],
) -> IncidentOut:
    """Change an incident's window, deadline, scope or reason; its status stays (audited)."""
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"scope"})
    if "recovery_deadline_s" in changes:
        changes["recovery_deadline"] = timedelta(seconds=changes.pop("recovery_deadline_s"))
    if body.scope is not None:
        changes["scope"] = body.scope.scope()
    if not changes:
        raise HTTPException(422, "nothing to change")
    return _incident(edit_incident(engine, incident_id, who, changes, settings.timestamp_years))


def edit_incident(
    engine: Engine,
    incident_id: str,
    who: Principal,
    changes: dict[str, Any],
    years: YearWindow,
) -> Incident:
    """Apply `changes` to an incident, keeping its status (audited): 404 when there is
    none, 422 for a change it refuses (unknown devices listed). Shared with the pages."""
    from rewards.services.incidents import IncidentError, UnknownDevices, UnknownIncident, decide

    try:
        return decide(
            engine, incident_id, status=None, by=who.subject, now=datetime.now(UTC),
            changes=changes, years=years,
        )  # fmt: skip
    except UnknownIncident:
        raise HTTPException(404, "no such incident") from None
    except UnknownDevices as exc:
        raise _unknown(exc) from None
    except IncidentError as exc:
        raise HTTPException(422, str(exc)) from None


def decide_status(engine: Engine, incident_id: str, status: str, who: Principal) -> Incident:
    """Confirm or dismiss an incident (audited); 404 when there is none. Shared with the
    admin pages."""
    from rewards.services.incidents import IncidentError, decide

    try:
        return decide(engine, incident_id, status=status, by=who.subject, now=datetime.now(UTC))
    except IncidentError:
        raise HTTPException(404, "no such incident") from None


@admin.post("/incidents/{incident_id}/dismiss", response_model=IncidentOut)
def admin_dismiss(
    incident_id: IncidentId,
    who: Admin,
    engine: EngineDep,
    _: Annotated[Principal, Depends(writer("admin.incidents.dismiss"))],
) -> IncidentOut:
    """Dismiss an incident: it no longer credits anyone from the next snapshot on."""
    return _incident(decide_status(engine, incident_id, "dismissed", who))


@admin.post("/incidents/{incident_id}/confirm", response_model=IncidentOut)
def admin_confirm(
    incident_id: IncidentId,
    who: Admin,
    engine: EngineDep,
    _: Annotated[Principal, Depends(writer("admin.incidents.confirm"))],
) -> IncidentOut:
    """Confirm an incident: it credits downtime from the next snapshot on (audited)."""
    return _incident(decide_status(engine, incident_id, "confirmed", who))


@admin.get("/alerts", response_model=list[AlertOut])
def admin_alerts(
    who: Admin,
    engine: EngineDep,
    status: Annotated[str | None, Query(pattern="^(open|cleared)$")] = None,
    limit: Limit = 100,
    before: Cursor = None,
) -> list[AlertOut]:
    """Alerts, newest first (write and metadata surges, and whom they block); for the next
    page pass the last one's id as `before`."""
    from rewards.services.alerts import list_alerts

    found = list_alerts(engine, status, limit, before_id=before)
    return [AlertOut.model_validate(a, from_attributes=True) for a in found]


@admin.post("/alerts/{alert_id}/clear", response_model=AlertOut)
def admin_clear_alert(
    alert_id: Annotated[int, FastPath(ge=1, le=2**62)], who: Admin, engine: EngineDep
) -> AlertOut:
    """Close an alert and lift its block (not by the actor it is about; audited)."""
    from rewards.services.alerts import AlertError, clear

    try:
        alert = clear(engine, alert_id, by=who.subject, now=datetime.now(UTC))
    except AlertError as exc:
        raise HTTPException(409, str(exc)) from None
    return AlertOut.model_validate(alert, from_attributes=True)


@admin.post("/snapshots/run", response_model=SnapshotRunOut)
def admin_snapshot_run(
    body: SnapshotRunIn,
    who: Admin,
    engine: EngineDep,
    settings: SettingsDep,
    _: Annotated[Principal, Depends(writer("admin.snapshots.run"))],
    policy: PolicyDep,
) -> SnapshotRunOut:
    """Run a draft snapshot of the configured season (all settled epochs by default)."""
    outcome = run_draft(
        engine, policy, settings, who, reason=body.reason, epochs=body.epochs, force=body.force
    )
    return SnapshotRunOut(snapshot=snapshot_out(outcome.snapshot), created=outcome.created)


def run_draft(
    engine: Engine,
    policy: SeasonPolicy,
    settings: Settings,
    who: Principal,
    *,
    reason: str,
    epochs: str | None = None,
    force: bool = False,
) -> RunOutcome:
    """A manual draft run of `epochs` ("a-b"; default: every settled epoch): 409 while
    another run holds the season, 422 for anything the run refuses. Shared with the pages."""
    from rewards.core import parse_epoch_range
    from rewards.services.runs import JobBusy
    from rewards.services.settlement import settled_epochs
    from rewards.services.snapshots import SnapshotError, run_snapshot

    now = datetime.now(UTC)
    try:
        chosen = (
            parse_epoch_range(epochs, policy.epoch_count)
            if epochs
            else settled_epochs(engine, policy, now=now, settlement=settings.settlement)
        )
        return run_snapshot(
            engine,
            policy,
            epochs=chosen,
            trigger="manual",
            triggered_by=who.subject,
            reason=reason,
            clock=lambda: datetime.now(UTC),
            lock_ttl=settings.job_lock,
            force=force,
        )
    except JobBusy:
        raise HTTPException(409, "a snapshot of this season is already running") from None
    except (SnapshotError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None


def diff_or_409(
    engine: Engine, settings: Settings, before: str, after: str
) -> tuple[Snapshot, Snapshot, DiffSummary]:
    """The two snapshots and what changed between them: 404 for an unknown one, 409 when
    they cannot be compared. Shared with the pages."""
    from rewards.services.snapshots import SnapshotError, diff

    a = resolve_or_404(engine, before, settings.season)
    b = resolve_or_404(engine, after, settings.season)
    try:
        return a, b, diff(engine, a, b).summary
    except SnapshotError as exc:
        raise HTTPException(409, str(exc)) from None


@admin.get("/snapshots/diff", response_model=DiffOut)
def admin_snapshot_diff(
    before: SnapshotQuery,
    after: SnapshotQuery,
    who: Admin,
    engine: EngineDep,
    settings: SettingsDep,
) -> DiffOut:
    """What changed between two snapshots: counts, base units moved, largest changes."""
    from rewards.services.snapshots import label

    a, b, s = diff_or_409(engine, settings, before, after)
    return DiffOut(
        before=label(a),
        after=label(b),
        device_epochs_changed=s.device_epochs_changed,
        devices_changed=s.devices_changed,
        device_epochs_regained=s.device_epochs_regained,
        device_epochs_lost=s.device_epochs_lost,
        suppliers_changed=s.suppliers_changed,
        moved=s.moved,
        largest=[{"owner_id": o, "before": x, "after": y, "delta": d} for o, x, y, d in s.largest],
    )


@admin.post("/snapshots/{ref}/publish", response_model=SnapshotOut)
def admin_snapshot_publish(
    ref: SnapshotRef,
    who: Admin,
    engine: EngineDep,
    settings: SettingsDep,
    _: Annotated[Principal, Depends(writer("admin.snapshots.publish"))],
    body: PublishIn | None = None,
) -> SnapshotOut:
    """Publish a draft; the season's previous published snapshot becomes superseded.
    Publishing a version older than the published one (a rollback) is a 409 unless the
    body has `override_rollback: true` and a `reason` (audited with what it moves)."""
    from rewards.services.snapshots import resolve

    chosen = body or PublishIn()
    if chosen.override_rollback and not (chosen.reason or "").strip():
        raise HTTPException(422, "override_rollback needs a reason")
    reason = chosen.reason if chosen.override_rollback else None
    snap = resolve_or_404(engine, ref, settings.season)
    publish_or_409(engine, settings, snap, who, rollback_reason=reason)
    return snapshot_out(resolve(engine, ref, settings.season))


def publish_or_409(
    engine: Engine,
    settings: Settings,
    snap: Snapshot,
    who: Principal,
    *,
    rollback_reason: str | None = None,
) -> None:
    """Publish `snap` (audited): 409 while a run holds the season or when it cannot be
    published; 409 `rollback-refused` when it is older than the published one and
    `rollback_reason` is not given (DESIGN 9). Shared with the pages."""
    from rewards.services.runs import JobBusy
    from rewards.services.snapshots import RollbackRefused, SnapshotError, publish

    try:
        publish(
            engine,
            snap,
            by=who.subject,
            clock=lambda: datetime.now(UTC),
            lock_ttl=settings.job_lock,
            rollback_reason=rollback_reason,
        )
    except JobBusy:
        raise HTTPException(409, "a snapshot of this season is running") from None
    except RollbackRefused as exc:  # its own type: clients tell it from a busy season
        raise Problem(TYPES["rollback-refused"], str(exc)) from None
    except SnapshotError as exc:
        raise HTTPException(409, str(exc)) from None


def _versions(found: list[Any], limit: int) -> MetadataPage:
    return MetadataPage(
        versions=[MetadataVersionOut.model_validate(v, from_attributes=True) for v in found],
        next_after=found[-1].id if len(found) == limit else None,
    )


@admin.get("/devices/{device_id}/metadata", response_model=MetadataPage)
def admin_device_metadata(
    device_id: DeviceId,
    who: Admin,
    engine: EngineDep,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Limit = 100,
) -> MetadataPage:
    """A device's metadata history, oldest version first (reverted versions included)."""
    from rewards.services.devices import metadata_changes

    found = metadata_changes(engine, device_id=device_id, after_id=after, limit=limit)
    return _versions(found, limit)


@admin.get("/metadata-changes", response_model=MetadataPage)
def admin_metadata_changes(
    who: Admin,
    engine: EngineDep,
    actor: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN)] = None,
    since: Annotated[AwareDatetime | None, Query()] = None,
    until: Annotated[AwareDatetime | None, Query()] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Limit = 100,
) -> MetadataPage:
    """Metadata changes by who wrote them and when they took effect ([since, until))."""
    from rewards.services.devices import metadata_changes

    found = metadata_changes(
        engine, actor=actor, since=since, until=until, after_id=after, limit=limit
    )
    return _versions(found, limit)


@admin.post("/metadata-changes/revert", response_model=RevertOut)
def admin_revert_metadata(
    body: RevertIn,
    who: Admin,
    engine: EngineDep,
    _: Annotated[Principal, Depends(writer("admin.metadata.revert"))],
) -> RevertOut:
    """Revert every change `actor` made in [since, until): the version before each applies
    again. Audited; the next snapshot run shows the effect."""
    from rewards.services.devices import RevertError, revert_changes

    try:
        reverted = revert_changes(
            engine,
            actor=body.actor,
            since=body.since,
            until=body.until,
            by=who.subject,
            now=datetime.now(UTC),
            reason=body.reason,
        )
    except RevertError as exc:
        raise HTTPException(422, str(exc)) from None
    return RevertOut(
        reverted=len(reverted),
        devices=len({v.device_id for v in reverted}),
        versions=[
            MetadataVersionOut.model_validate(v, from_attributes=True) for v in reverted[:500]
        ],
    )


@admin.get("/job-runs", response_model=list[JobRunOut])
def admin_job_runs(
    who: Admin, engine: EngineDep, limit: Limit = 100, before: Cursor = None
) -> list[JobRunOut]:
    """The latest job runs, newest first; for the next page pass the last one's id as
    `before`."""
    from rewards.services.runs import recent_runs

    found = recent_runs(engine, limit, before_id=before)
    return [JobRunOut.model_validate(r, from_attributes=True) for r in found]
