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
    Readiness,
)
from rewards.services.database import readiness
from rewards.services.devices import public_device
from rewards.services.ingest_metrics import INGEST_METRICS

operations = APIRouter(tags=["operations"])
public = APIRouter(prefix="/v1/explorer", tags=["public"])
anyone = APIRouter(prefix="/v1", tags=["any role"])


HEALTHY = {"status": "ok"}


@operations.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """Alive: depends on nothing (DESIGN 10). `async` so that it runs on the event loop and
    never waits for a worker thread held by a locked database or a slow provider."""
    return HEALTHY


@operations.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(request: Request, engine: EngineDep) -> JSONResponse:
    """Ready when the database answers and is migrated to the newest revision, and, with an
    issuer configured, its keys were fetched (fresh, or stale within the stale period)."""
    database, migrations = readiness(engine)
    verifier = request.app.state.verifier
    provider = "not configured" if verifier is None else verifier.jwks.state().status
    ready = (database, migrations) == ("ok", "at head") and provider in {
        "not configured", "fresh", "stale",
    }  # fmt: skip
    body = Readiness(
        status="ok" if ready else "not ready",
        database=database,
        migrations=migrations,
        identity_provider=provider,
    )
    return JSONResponse(body.model_dump(), 200 if ready else 503)


@operations.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics: the API's, and ingestion's when this process pulls (serve)."""
    body = generate_latest(request.app.state.metrics.registry)
    body += generate_latest(INGEST_METRICS.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@public.get("/devices/{device_id}", response_model=PublicDeviceOut)
def explorer_device(device_id: DeviceId, engine: EngineDep) -> PublicDeviceOut:
    """A device's public fields: model, status, last seen. Never its owner."""
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
