"""Operations (health, readiness, metrics), the public explorer, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rewards.api.deps import (
    Anyone,
    DeviceId,
    EngineDep,
)
from rewards.api.schemas import (
    Health,
    MeOut,
    PublicDeviceOut,
)

operations = APIRouter(tags=["operations"])
public = APIRouter(prefix="/v1/explorer", tags=["public"])
anyone = APIRouter(prefix="/v1", tags=["any role"])


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
    """Prometheus metrics: the API's, and ingestion's when this process pulls (serve)."""
    from rewards.services.ingest_metrics import INGEST_METRICS

    body = generate_latest(request.app.state.metrics.registry)
    body += generate_latest(INGEST_METRICS.registry)
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
