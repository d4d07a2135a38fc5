"""What every route depends on: the engine and settings of the app, and who is calling.

A missing or invalid token is 401 (with a WWW-Authenticate challenge); a valid token
without the route's role is 403. Why a token was refused goes to the log and a metric,
never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from sqlalchemy import Engine

from rewards.api.auth import AuthError, Principal, TokenVerifier
from rewards.settings import Settings

log = logging.getLogger("rewards.api")

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$"
SnapshotRef = Annotated[str, Path(pattern=r"^(?:[A-Za-z0-9._-]{1,80}-)?v?\d{1,9}$")]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN)]
IncidentId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$")]
Limit = Annotated[int, Query(ge=1, le=500)]


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def principal(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <JWT>`."""
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
    if not request.app.state.limiter.allow_subject(who.subject):
        metrics.refused.labels("rate limit: subject").inc()
        raise HTTPException(429, "too many requests", {"Retry-After": "60"})
    return who


def role(name: str) -> Callable[..., Principal]:
    """A dependency admitting only callers with role `name`."""

    def check(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
        if not who.has(name):
            request.app.state.metrics.refused.labels("role").inc()
            raise HTTPException(403, f"this needs the {name} role")
        return who

    return check


EngineDep = Annotated[Engine, Depends(engine_of)]
SettingsDep = Annotated[Settings, Depends(settings_of)]
Anyone = Annotated[Principal, Depends(principal)]
Supplier = Annotated[Principal, Depends(role("supplier"))]
Finance = Annotated[Principal, Depends(role("finance"))]
Admin = Annotated[Principal, Depends(role("admin"))]
