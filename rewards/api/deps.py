"""What every route depends on: the engine and settings of the app, and who is calling.

A missing or invalid token is 401 (with a WWW-Authenticate challenge); a valid token
without the route's role is 403. Why a token was refused goes to the log and a metric,
never to the client.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from sqlalchemy import Engine

from rewards.api.auth import AuthError, KeysUnavailable, Principal, TokenVerifier
from rewards.api.problems import keys_unavailable
from rewards.api.schemas import INCIDENT_ID_PATTERN
from rewards.core import IDENTIFIER_PATTERN, SeasonPolicy
from rewards.seasons import load_policy
from rewards.services.alerts import blocked_actors, raise_alert
from rewards.services.publication_key import publication_key
from rewards.services.sessions import token_revoked
from rewards.settings import Settings

log = logging.getLogger("rewards.api")

REF_PATTERN = r"^(?:[A-Za-z0-9._-]{1,80}-)?v?\d{1,9}$"
SnapshotRef = Annotated[str, PathParam(pattern=REF_PATTERN)]
SnapshotQuery = Annotated[str, Query(pattern=REF_PATTERN)]
DeviceId = Annotated[str, PathParam(pattern=IDENTIFIER_PATTERN)]
IncidentId = Annotated[str, PathParam(pattern=INCIDENT_ID_PATTERN)]
Limit = Annotated[int, Query(ge=1, le=500)]
Cursor = Annotated[int | None, Query(ge=1, le=2**62)]  # keyset pagination by id


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def principal(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <JWT>` (verified once per request: the edge
    checks a request with a body before reading it and keeps the caller for its route)."""
    known = getattr(request.state, "caller", None)
    if isinstance(known, Principal):
        return known
    metrics = request.app.state.metrics
    verifier: TokenVerifier | None = request.app.state.verifier
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        metrics.refused.labels("no token").inc()
        raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    if verifier is None:
        metrics.refused.labels("no issuer configured").inc()
        raise HTTPException(401, "invalid token", {"WWW-Authenticate": "Bearer"})
    try:
        who = verifier.verify(token.strip())
    except AuthError as exc:
        log.info("refused token: %s", exc)
        metrics.refused.labels("invalid token").inc()
        raise HTTPException(
            401, "invalid token", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    except KeysUnavailable:  # DESIGN 10: no key was ever fetched (or all are past stale)
        metrics.refused.labels("no keys").inc()
        raise keys_unavailable() from None
    if _signed_out(request, token.strip()):
        log.info("refused token: its session was signed out")
        metrics.refused.labels("signed out").inc()
        raise HTTPException(
            401, "invalid token", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    if not request.app.state.limiter.allow_subject(who.subject):
        metrics.refused.labels("rate limit: subject").inc()
        raise HTTPException(429, "too many requests", {"Retry-After": "60"})
    request.state.caller = who
    return who


def _signed_out(request: Request, token: str) -> bool:
    """True when `token` came from a web session that was signed out (issue 12): the
    database says so, for every worker process."""
    return token_revoked(request.app.state.engine, token)


def role(name: str) -> Callable[..., Principal]:
    """A dependency admitting only callers with role `name`."""

    def check(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.has(name):
            request.app.state.metrics.refused.labels("role").inc()
            raise HTTPException(403, f"this needs the {name} role")
        return who

    return check


def publication_key_of(request: Request) -> bytes:
    """The publication key (DESIGN 9), read once per process (made on first use)."""
    key: bytes | None = getattr(request.app.state, "publication_key", None)
    if key is None:
        key = publication_key(settings_of(request).publication_key_path)
        request.app.state.publication_key = key
    return key


EngineDep = Annotated[Engine, Depends(engine_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
KeyDep = Annotated[bytes, Depends(publication_key_of)]
Anyone = Annotated[Principal, Depends(principal)]
Supplier = Annotated[Principal, Depends(role("supplier"))]
Finance = Annotated[Principal, Depends(role("finance"))]
Admin = Annotated[Principal, Depends(role("admin"))]


def _notify(url: str, payload: dict[str, object]) -> None:
    def post() -> None:
        try:
            httpx.post(url, json=payload, timeout=5).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("alert webhook %s failed: %s", url, type(exc).__name__)

    threading.Thread(target=post, daemon=True).start()


def watch_write(request: Request, who: Principal, route: str) -> None:
    """Refuse a blocked actor (403) and count the write for the surge detector: a surge
    raises an alert (stored, logged, counted, sent to the webhook) and, when settings say
    so, blocks the actor. Every write route, API or page, goes through here."""
    state = request.app.state
    if who.subject in blocked_actors(state.engine):
        state.metrics.refused.labels("blocked").inc()
        raise HTTPException(403, "writes blocked until an admin reviews a surge alert")
    surge = state.surges.record(route, who.subject, datetime.now(UTC))
    if surge is None:
        return
    settings: Settings = state.settings
    alert = raise_alert(
        state.engine,
        kind="write-surge",
        route=route,
        actor=who.subject,
        writes=surge.writes,
        threshold=surge.threshold,
        block=settings.surge_block,
        now=datetime.now(UTC),
    )
    state.metrics.surges.labels(route).inc()
    log.warning(
        "write surge: %s made %d writes to %s in a minute (threshold %.1f); alert %s",
        who.subject, surge.writes, route, surge.threshold, alert.id,
    )  # fmt: skip
    if settings.alert_webhook_url:
        _notify(
            settings.alert_webhook_url,
            {"alert": alert.id, "kind": alert.kind, "route": route, "actor": who.subject,
             "writes": surge.writes, "threshold": surge.threshold, "blocked": alert.blocked},
        )  # fmt: skip
    if settings.surge_block:
        raise HTTPException(403, "writes blocked until an admin reviews a surge alert")


def writer(route: str) -> Callable[..., Principal]:
    """A dependency for write routes: refuses blocked actors and watches for surges."""

    def guard(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
        watch_write(request, who, route)
        return who

    return guard


# device_id/epoch, a device-epoch cursor
EPOCH_KEY_PATTERN = IDENTIFIER_PATTERN.removesuffix("$") + r"/\d{1,9}$"


def season_policy(settings: Annotated[Settings, Depends(settings_of)]) -> SeasonPolicy:
    """The configured season's rules (read once per file and change time)."""
    path = settings.season_file
    return _policy(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _policy(path: Path, _mtime: int) -> SeasonPolicy:
    return load_policy(path)


PolicyDep = Annotated[SeasonPolicy, Depends(season_policy)]
