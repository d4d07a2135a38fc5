"""The routes, one router per door: operations, public explorer, supplier, finance, admin.

A supplier only ever sees its own devices and payouts: the owner is the token's subject,
never a parameter, and a snapshot or payout that is not theirs is the same 404 as one that
does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as FastPath
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rewards.api.auth import Principal
from rewards.api.deps import (
    ID_PATTERN,
    Admin,
    Anyone,
    DeviceId,
    EngineDep,
    Finance,
    IncidentId,
    Limit,
    SettingsDep,
    SnapshotRef,
    Supplier,
    writer,
)
from rewards.api.schemas import (
    AlertOut,
    DeviceOut,
    DevicePage,
    Health,
    IncidentOut,
    MeOut,
    ProofStepOut,
    PublicDeviceOut,
    RewardOut,
    SnapshotOut,
)
from rewards.db.tables import Incident

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


@finance.get("/snapshots", response_model=list[SnapshotOut])
def finance_snapshots(who: Finance, engine: EngineDep, limit: Limit = 100) -> list[SnapshotOut]:
    """Snapshots, newest first, with their totals and roots."""
    from rewards.services.snapshots import label, list_snapshots

    return [
        SnapshotOut(
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
        for s in list_snapshots(engine)[:limit]
    ]


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
) -> list[IncidentOut]:
    """Incidents, oldest first; `status=proposed` lists what the detector proposes."""
    from rewards.services.incidents import list_incidents

    return [_incident(i) for i in list_incidents(engine, status)[:limit]]


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
) -> list[AlertOut]:
    """Alerts, newest first (write surges and who they block)."""
    from rewards.services.alerts import list_alerts

    return [
        AlertOut.model_validate(a, from_attributes=True) for a in list_alerts(engine, status, limit)
    ]


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


ROUTERS = (operations, public, anyone, supplier, finance, admin)
