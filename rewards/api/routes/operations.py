"""Operations (health, readiness, metrics), the public explorer, and who am I."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi import Path as FastPath
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from rewards.api.deps import (
    Anyone,
    DeviceId,
    EngineDep,
    PolicyDep,
    SettingsDep,
    SnapshotRef,
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
from rewards.services.observability import FleetStatus, fleet_status
from rewards.services.public_bundle import PUBLIC_FILES, public_files
from rewards.services.snapshots import resolve

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
def metrics(request: Request, engine: EngineDep, policy: PolicyDep) -> Response:
    """Prometheus metrics: the API's, ingestion's when this process pulls (serve), and the
    fleet's and the jobs' as the database has them (rewards/services/observability.py)."""
    body = generate_latest(request.app.state.metrics.registry)
    body += generate_latest(INGEST_METRICS.registry)
    body += generate_latest(_fleet_registry(fleet_status(engine, policy, now=datetime.now(UTC))))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _fleet_registry(status: FleetStatus) -> CollectorRegistry:
    """The fleet's and the jobs' numbers as gauges, in a registry made for this scrape."""
    registry = CollectorRegistry()
    Gauge(
        "rewards_fleet_online_devices",
        "Devices seen within a liveness timeout of the newest heartbeat",
        registry=registry,
    ).set(status.online_devices)
    age = Gauge(
        "rewards_fleet_newest_heartbeat_age_seconds",
        "Seconds since the newest heartbeat stored (ingest lag, whoever pulls)",
        registry=registry,
    )
    age.set(status.newest_heartbeat_age_s if status.newest_heartbeat_age_s is not None else -1)
    published = Gauge(
        "rewards_snapshot_published_age_seconds",
        "Seconds since the season's published snapshot was published (-1: none)",
        registry=registry,
    )
    published.set(status.published_age_s if status.published_age_s is not None else -1)
    runs = Gauge(
        "rewards_job_runs", "Job runs recorded, by job and status", ["job", "status"],
        registry=registry,
    )  # fmt: skip
    for job, state, count in status.runs:
        runs.labels(job, state).set(count)
    took = Gauge(
        "rewards_job_last_duration_seconds", "The latest finished run's duration", ["job"],
        registry=registry,
    )  # fmt: skip
    failed = Gauge(
        "rewards_job_last_failed", "1 when the job's latest finished run failed", ["job"],
        registry=registry,
    )  # fmt: skip
    for outcome in status.latest:
        took.labels(outcome.job_id).set(outcome.seconds)
        failed.labels(outcome.job_id).set(int(outcome.status != "succeeded"))
    return registry


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


PublicFile = Annotated[
    str, FastPath(pattern="^(" + "|".join(PUBLIC_FILES).replace(".", r"\.") + ")$")
]


@public.get(
    "/snapshots/{ref}/public/{name}",
    response_class=Response,
    responses={200: {"content": {t: {} for t in set(PUBLIC_FILES.values())}}},
)
def explorer_public_file(
    ref: SnapshotRef, name: PublicFile, engine: EngineDep, settings: SettingsDep
) -> Response:
    """One file of a published snapshot's public bundle (manifest.json, claims.ndjson,
    epochs.json, policy.json): no sign-in, cacheable, and nothing in it names an owner or
    links a device to one. 409 for a draft or a snapshot made before pseudonymous
    leaves. Check a bundle with tools/verify_payout.py."""
    found = public_files(engine, resolve(engine, ref, settings.season))
    return Response(
        found[name],
        media_type=PUBLIC_FILES[name],
        headers={"Cache-Control": "public, max-age=3600, immutable",
                 "ETag": '"' + hashlib.sha256(found[name]).hexdigest() + '"'},
    )  # fmt: skip


@anyone.get("/me", response_model=MeOut)
def me(who: Anyone) -> MeOut:
    """Who the token says you are."""
    return MeOut(subject=who.subject, roles=sorted(who.roles))
