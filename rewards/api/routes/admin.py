"""The admin's door: incidents, alerts, snapshot runs, diffs and publishing, device metadata
history and reverts, job runs. Every write is watched for surges and audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

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
    KeyDep,
    Limit,
    PolicyDep,
    SettingsDep,
    SnapshotQuery,
    SnapshotRef,
    writer,
)
from rewards.api.routes.common import snapshot_out
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
from rewards.services.alerts import clear, list_alerts
from rewards.services.archive import open_archive
from rewards.services.computing import plan_of
from rewards.services.devices import MetadataVersion, metadata_changes, revert_changes
from rewards.services.incidents import decide, declare, list_incidents
from rewards.services.publication import publish_ref
from rewards.services.records import IncidentRecord
from rewards.services.runs import recent_runs
from rewards.services.snapshot_runs import run_now
from rewards.services.snapshots import compare, label

admin = APIRouter(prefix="/v1/admin", tags=["admin"])


def _incident(i: IncidentRecord) -> IncidentOut:
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
    return _incident(made)


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
    edited = decide(
        engine,
        incident_id,
        status=None,
        by=who.subject,
        now=datetime.now(UTC),
        changes=changes,
        years=settings.timestamp_years,
    )
    return _incident(edited)


@admin.post("/incidents/{incident_id}/dismiss", response_model=IncidentOut)
def admin_dismiss(
    incident_id: IncidentId,
    who: Admin,
    engine: EngineDep,
    _: Annotated[Principal, Depends(writer("admin.incidents.dismiss"))],
) -> IncidentOut:
    """Dismiss an incident: it no longer credits anyone from the next snapshot on."""
    return _incident(
        decide(engine, incident_id, status="dismissed", by=who.subject, now=datetime.now(UTC))
    )


@admin.post("/incidents/{incident_id}/confirm", response_model=IncidentOut)
def admin_confirm(
    incident_id: IncidentId,
    who: Admin,
    engine: EngineDep,
    _: Annotated[Principal, Depends(writer("admin.incidents.confirm"))],
) -> IncidentOut:
    """Confirm an incident: it credits downtime from the next snapshot on (audited)."""
    return _incident(
        decide(engine, incident_id, status="confirmed", by=who.subject, now=datetime.now(UTC))
    )


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
    found = list_alerts(engine, status, limit, before_id=before)
    return [AlertOut.model_validate(a, from_attributes=True) for a in found]


@admin.post("/alerts/{alert_id}/clear", response_model=AlertOut)
def admin_clear_alert(
    alert_id: Annotated[int, FastPath(ge=1, le=2**62)], who: Admin, engine: EngineDep
) -> AlertOut:
    """Close an alert and lift its block (not by the actor it is about; audited)."""
    alert = clear(engine, alert_id, by=who.subject, now=datetime.now(UTC))
    return AlertOut.model_validate(alert, from_attributes=True)


@admin.post("/snapshots/run", response_model=SnapshotRunOut)
def admin_snapshot_run(
    body: SnapshotRunIn,
    who: Admin,
    engine: EngineDep,
    settings: SettingsDep,
    _: Annotated[Principal, Depends(writer("admin.snapshots.run"))],
    policy: PolicyDep,
    key: KeyDep,
) -> SnapshotRunOut:
    """Run a draft snapshot of the configured season (all settled epochs by default): 409
    while another run holds the season, 422 for anything the run refuses."""
    outcome = run_now(
        engine,
        policy,
        by=who.subject,
        reason=body.reason,
        epochs=body.epochs,
        force=body.force,
        settlement=settings.settlement,
        lock_ttl=settings.job_lock,
        archive=open_archive(settings.archive_url),
        clock=lambda: datetime.now(UTC),
        key=key,
        plan=plan_of(settings),
        keep=settings.snapshot_inputs_path,
    )
    return SnapshotRunOut(snapshot=snapshot_out(outcome.snapshot), created=outcome.created)


@admin.get("/snapshots/diff", response_model=DiffOut)
def admin_snapshot_diff(
    before: SnapshotQuery,
    after: SnapshotQuery,
    who: Admin,
    engine: EngineDep,
    settings: SettingsDep,
) -> DiffOut:
    """What changed between two snapshots: counts, base units moved, largest changes."""
    found = compare(engine, before, after, settings.season)
    s = found.summary
    return DiffOut(
        before=label(found.before),
        after=label(found.after),
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
    chosen = body or PublishIn()
    if chosen.override_rollback and not (chosen.reason or "").strip():
        raise HTTPException(422, "override_rollback needs a reason")
    done = publish_ref(
        engine,
        ref,
        settings.season,
        by=who.subject,
        clock=lambda: datetime.now(UTC),
        lock_ttl=settings.job_lock,
        rollback_reason=chosen.reason if chosen.override_rollback else None,
    )
    return snapshot_out(done.published)


def _versions(found: list[MetadataVersion], limit: int) -> MetadataPage:
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
    reverted = revert_changes(
        engine,
        actor=body.actor,
        since=body.since,
        until=body.until,
        by=who.subject,
        now=datetime.now(UTC),
        reason=body.reason,
    )
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
    found = recent_runs(engine, limit, before_id=before)
    return [JobRunOut.model_validate(r, from_attributes=True) for r in found]
