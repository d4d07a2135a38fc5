"""The routes, one router per door: operations, public explorer, supplier, finance, admin.

A supplier only ever sees its own devices and payouts: the owner is the token's subject,
never a parameter, and a snapshot or payout that is not theirs is the same 404 as one that
does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as FastPath
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime
from sqlalchemy import Engine

from rewards.api.auth import Principal
from rewards.api.deps import (
    EPOCH_KEY_PATTERN,
    Admin,
    Anyone,
    Cursor,
    DeviceId,
    EngineDep,
    Finance,
    IncidentId,
    Limit,
    PolicyDep,
    SettingsDep,
    SnapshotQuery,
    SnapshotRef,
    Supplier,
    writer,
)
from rewards.api.schemas import (
    ID_PATTERN,
    AdjustmentOut,
    AlertOut,
    DeviceOut,
    DevicePage,
    DiffOut,
    EligibilityPage,
    Health,
    IncidentEditIn,
    IncidentIn,
    IncidentOut,
    JobRunOut,
    MeOut,
    MetadataPage,
    MetadataVersionOut,
    ProofStepOut,
    PublicDeviceOut,
    RevertIn,
    RevertOut,
    RewardOut,
    SnapshotOut,
    SnapshotRunIn,
    SnapshotRunOut,
)
from rewards.db.tables import Incident, Snapshot

operations = APIRouter(tags=["operations"])
public = APIRouter(prefix="/v1/explorer", tags=["public"])
anyone = APIRouter(prefix="/v1", tags=["any role"])
supplier = APIRouter(prefix="/v1/supplier", tags=["supplier"])
finance = APIRouter(prefix="/v1/finance", tags=["finance"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])


@operations.get("/healthz", response_model=Health)
def healthz() -> Health:
    return Health(status="ok")


@operations.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(engine: EngineDep) -> JSONResponse:
    """Ready when the database answers and is migrated to the newest revision."""
    from rewards.db.migrate import current_revision, head_revision

    try:
        ready = current_revision(engine) == head_revision(str(engine.url))
    except Exception:
        ready = False
    return JSONResponse({"status": "ok" if ready else "not ready"}, 200 if ready else 503)


@operations.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics."""
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@public.get("/devices/{device_id}", response_model=PublicDeviceOut)
def explorer_device(device_id: DeviceId, engine: EngineDep) -> PublicDeviceOut:
    """A device's public fields: model, status, last seen. Never its owner."""
    from rewards.services.devices import public_device

    found = public_device(engine, device_id)
    if found is None:
        raise HTTPException(404, "no such device")
    return PublicDeviceOut(
        device_id=found.device_id,
        gpu_model=found.gpu_model,
        status=found.status,
        last_seen=found.last_seen,
    )


@anyone.get("/me", response_model=MeOut)
def me(who: Anyone) -> MeOut:
    """Who the token says you are."""
    return MeOut(subject=who.subject, roles=sorted(who.roles))


@supplier.get("/devices", response_model=DevicePage)
def supplier_devices(
    who: Supplier,
    engine: EngineDep,
    limit: Limit = 100,
    after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> DevicePage:
    """Your devices now, by device_id; pass `next_after` as `after` for the next page."""
    from rewards.services.devices import owned_devices

    rows = owned_devices(engine, who.subject, limit=limit, after=after)
    return DevicePage(
        devices=[
            DeviceOut(
                device_id=r.device_id,
                gpu_model=r.gpu_model,
                gpu_count=r.gpu_count,
                status=r.status,
                last_seen=r.last_seen,
            )
            for r in rows
        ],
        next_after=rows[-1].device_id if len(rows) == limit else None,
    )


@supplier.get(
    "/eligibility",
    response_model=EligibilityPage,
    responses={503: {"description": "The season's eligibility has not been computed yet."}},
)
def supplier_eligibility(
    who: Supplier,
    engine: EngineDep,
    policy: PolicyDep,
    device_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    epoch: Annotated[int | None, Query(ge=0, le=100_000)] = None,
    after: Annotated[str | None, Query(pattern=EPOCH_KEY_PATTERN)] = None,
    limit: Limit = 100,
) -> Response:
    """Your device-epochs of the season so far (owner as of each epoch's start): what
    counted, eligible or not, and why in words; by device then epoch. Refreshed by a job
    every few minutes (`as_of` says when); a device that is not yours is simply absent."""
    from rewards.services.eligibility_view import page_json, supplier_standing

    key = None
    if after is not None:
        device, _, number = after.rpartition("/")
        key = (device, int(number))
    standing = supplier_standing(
        engine,
        policy.season_id,
        who.subject,
        limit=limit,
        device_id=device_id,
        epoch=epoch,
        after=key,
    )
    if standing is None:
        raise HTTPException(
            503, "eligibility for this season has not been computed yet", {"Retry-After": "60"}
        )
    # built by polars in one go (EligibilityPage's shape, which the suite checks): per-row
    # models cost more than the rest of the request together
    return Response(page_json(standing), media_type="application/json")


@supplier.get("/rewards/{ref}", response_model=RewardOut)
def supplier_reward(
    ref: SnapshotRef, who: Supplier, engine: EngineDep, settings: SettingsDep
) -> RewardOut:
    """Your payout in a published (or superseded) snapshot, with its Merkle proof."""
    from rewards.services.snapshots import SnapshotError, proof, resolve

    try:
        snap = resolve(engine, ref, settings.season)
        if snap.status == "draft":
            raise SnapshotError("drafts are not shown to suppliers")
        document: dict[str, Any] = proof(engine, snap, who.subject)
    except SnapshotError:
        raise HTTPException(404, "no such published snapshot or payout") from None
    return RewardOut(
        snapshot=document["snapshot"],
        owner_id=who.subject,
        amount=document["leaf"][3],
        amount_decimal=document["amount_decimal"],
        leaf=document["leaf"],
        proof=[ProofStepOut(**step) for step in document["proof"]],
        root=document["root"],
    )


def _snapshot(s: Snapshot) -> SnapshotOut:
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


def _resolve(engine: Engine, ref: str, season: str) -> Snapshot:
    from rewards.services.snapshots import SnapshotError, resolve

    try:
        return resolve(engine, ref, season)
    except SnapshotError:
        raise HTTPException(404, "no such snapshot") from None


@finance.get("/snapshots", response_model=list[SnapshotOut])
def finance_snapshots(
    who: Finance,
    engine: EngineDep,
    settings: SettingsDep,
    limit: Limit = 100,
    before: Cursor = None,
) -> list[SnapshotOut]:
    """The season's snapshots, newest first, with their totals and roots; for the next
    page pass the last one's version as `before`."""
    from rewards.services.snapshots import list_snapshots

    found = list_snapshots(engine, settings.season)
    found = [s for s in found if before is None or s.version < before]
    return [_snapshot(s) for s in found[:limit]]


EXPORT_FILES = {
    "device_epochs.csv": "text/csv",
    "device_epochs.parquet": "application/vnd.apache.parquet",
    "suppliers.csv": "text/csv",
    "suppliers.parquet": "application/vnd.apache.parquet",
    "manifest.json": "application/json",
}
ExportFile = Annotated[
    str, FastPath(pattern="^(" + "|".join(EXPORT_FILES).replace(".", r"\.") + ")$")
]


@finance.get("/snapshots/{ref}/export/{name}", response_class=FileResponse)
def finance_export(
    ref: SnapshotRef, name: ExportFile, who: Finance, engine: EngineDep, settings: SettingsDep
) -> FileResponse:
    """One file of the snapshot's finance export, streamed (see manifest.json for hashes)."""
    import shutil
    import tempfile
    from pathlib import Path as FilePath

    from starlette.background import BackgroundTask

    from rewards.services.snapshots import SnapshotError, export

    snap = _resolve(engine, ref, settings.season)
    scratch = FilePath(tempfile.mkdtemp(prefix="export-"))
    try:
        export(engine, snap, scratch / "out")
    except SnapshotError:
        shutil.rmtree(scratch, ignore_errors=True)
        raise HTTPException(409, "this snapshot cannot be exported (see the logs)") from None
    return FileResponse(
        scratch / "out" / name,
        media_type=EXPORT_FILES[name],
        filename=f"{ref}-{name}",
        background=BackgroundTask(shutil.rmtree, scratch, ignore_errors=True),
    )


@finance.get("/adjustments", response_model=list[AdjustmentOut])
def finance_adjustments(
    paid: SnapshotQuery,
    due: SnapshotQuery,
    who: Finance,
    engine: EngineDep,
    settings: SettingsDep,
) -> list[AdjustmentOut]:
    """Per supplier, what is owed (positive) or was overpaid when `due` replaces `paid`."""
    from rewards.services.snapshots import SnapshotError, settle

    a, b = _resolve(engine, paid, settings.season), _resolve(engine, due, settings.season)
    try:
        table = settle(engine, a, b)
    except SnapshotError as exc:
        raise HTTPException(409, str(exc)) from None
    return [AdjustmentOut(**row) for row in table.iter_rows(named=True)]


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
    after: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$")] = None,
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
    _: Annotated[Principal, Depends(writer("admin.incidents.declare"))],
) -> IncidentOut:
    """Declare an incident (confirmed at once; audited). 409 if the id is taken."""
    from rewards.services.incidents import IncidentError, IncidentExists, declare

    try:
        made = declare(
            engine,
            incident_id=body.id,
            start=body.start,
            end=body.end,
            recovery_deadline=timedelta(seconds=body.recovery_deadline_s),
            scope=body.scope.as_dict(),
            reason=body.reason,
            by=who.subject,
            now=datetime.now(UTC),
        )
    except IncidentExists:
        raise HTTPException(409, "an incident with this id exists") from None
    except IncidentError as exc:
        raise HTTPException(422, str(exc)) from None
    return _incident(made)


@admin.patch("/incidents/{incident_id}", response_model=IncidentOut)
def admin_edit(
    incident_id: IncidentId,
    body: IncidentEditIn,
    who: Admin,
    engine: EngineDep,
    _: Annotated[Principal, Depends(writer("admin.incidents.edit"))],
) -> IncidentOut:
    """Change an incident's window, deadline, scope or reason; its status stays (audited)."""
    from rewards.services.incidents import IncidentError, UnknownIncident, decide

    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"scope"})
    if "recovery_deadline_s" in changes:
        changes["recovery_deadline"] = timedelta(seconds=changes.pop("recovery_deadline_s"))
    if body.scope is not None:
        changes["scope"] = body.scope.as_dict()
    if not changes:
        raise HTTPException(422, "nothing to change")
    try:
        edited = decide(
            engine,
            incident_id,
            status=None,
            by=who.subject,
            now=datetime.now(UTC),
            changes=changes,
        )
    except UnknownIncident:
        raise HTTPException(404, "no such incident") from None
    except IncidentError as exc:
        raise HTTPException(422, str(exc)) from None
    return _incident(edited)


@admin.post("/incidents/{incident_id}/dismiss", response_model=IncidentOut)
def admin_dismiss(
    incident_id: IncidentId,
    who: Admin,
    engine: EngineDep,
    _: Annotated[Principal, Depends(writer("admin.incidents.dismiss"))],
) -> IncidentOut:
    """Dismiss an incident: it no longer credits anyone from the next snapshot on."""
    from rewards.services.incidents import IncidentError, decide

    try:
        found = decide(
            engine, incident_id, status="dismissed", by=who.subject, now=datetime.now(UTC)
        )
    except IncidentError:
        raise HTTPException(404, "no such incident") from None
    return _incident(found)


@admin.post("/incidents/{incident_id}/confirm", response_model=IncidentOut)
def admin_confirm(
    incident_id: IncidentId,
    who: Admin,
    engine: EngineDep,
    _: Annotated[Principal, Depends(writer("admin.incidents.confirm"))],
) -> IncidentOut:
    """Confirm an incident: it credits downtime from the next snapshot on (audited)."""
    from rewards.services.incidents import IncidentError, decide

    try:
        found = decide(
            engine, incident_id, status="confirmed", by=who.subject, now=datetime.now(UTC)
        )
    except IncidentError:
        raise HTTPException(404, "no such incident") from None
    return _incident(found)


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
) -> SnapshotRunOut:
    """Run a draft snapshot of the configured season (all settled epochs by default)."""
    from rewards.core.snapshots import closed_epochs, parse_epoch_range
    from rewards.seasons import load_policy
    from rewards.services.runs import JobBusy
    from rewards.services.snapshots import SnapshotError, run_snapshot

    policy = load_policy(settings.season_file)
    now = datetime.now(UTC)
    try:
        epochs = (
            parse_epoch_range(body.epochs, policy.epoch_count)
            if body.epochs
            else closed_epochs(policy, now, settings.snapshot_settlement_s * 1_000_000)
        )
        outcome = run_snapshot(
            engine,
            policy,
            epochs=epochs,
            trigger="manual",
            triggered_by=who.subject,
            reason=body.reason,
            clock=lambda: datetime.now(UTC),
            lock_ttl=timedelta(seconds=settings.job_lock_s),
            force=body.force,
        )
    except JobBusy:
        raise HTTPException(409, "a snapshot of this season is already running") from None
    except (SnapshotError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None
    return SnapshotRunOut(snapshot=_snapshot(outcome.snapshot), created=outcome.created)


@admin.get("/snapshots/diff", response_model=DiffOut)
def admin_snapshot_diff(
    before: SnapshotQuery,
    after: SnapshotQuery,
    who: Admin,
    engine: EngineDep,
    settings: SettingsDep,
) -> DiffOut:
    """What changed between two snapshots: counts, base units moved, largest changes."""
    from rewards.services.snapshots import SnapshotError, diff, label

    a, b = _resolve(engine, before, settings.season), _resolve(engine, after, settings.season)
    try:
        s = diff(engine, a, b).summary
    except SnapshotError as exc:
        raise HTTPException(409, str(exc)) from None
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
) -> SnapshotOut:
    """Publish a draft; the season's previous published snapshot becomes superseded."""
    from rewards.services.runs import JobBusy
    from rewards.services.snapshots import SnapshotError, publish, resolve

    snap = _resolve(engine, ref, settings.season)
    try:
        publish(
            engine,
            snap,
            by=who.subject,
            clock=lambda: datetime.now(UTC),
            lock_ttl=timedelta(seconds=settings.job_lock_s),
        )
    except JobBusy:
        raise HTTPException(409, "a snapshot of this season is running") from None
    except SnapshotError as exc:
        raise HTTPException(409, str(exc)) from None
    return _snapshot(resolve(engine, ref, settings.season))


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
    actor: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
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


ROUTERS = (operations, public, anyone, supplier, finance, admin)
