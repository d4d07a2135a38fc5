"""The engine's HTTP API (issue 5): each user's door, and no one through another's.

`create_app` wires the routers (rewards/api/routes/) to an engine, settings and token
verifier behind the edge (rewards/api/edge.py: client address, rate limit, body cap,
unauthenticated bodies refused unread), counts requests for /metrics, and makes every
error an RFC 9457 problem document (rewards/api/problems.py) that never echoes internal
details.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import Engine

from rewards.api import openapi, problems
from rewards.api.auth import TokenVerifier
from rewards.api.edge import MAX_BODY_BYTES, Gate, Guard, bearer_gate, networks
from rewards.api.routes import ROUTERS
from rewards.api.surges import WriteCounter
from rewards.api.verifier import dev_issuer
from rewards.settings import Settings

__all__ = ["MAX_BODY_BYTES", "Metrics", "RateLimits", "create_app"]


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "rewards_api_requests", "API requests", ["route", "status"], registry=self.registry
        )
        self.surges = Counter(
            "rewards_api_write_surges", "Write surges detected", ["route"], registry=self.registry
        )
        self.refused = Counter(
            "rewards_api_refused", "Requests refused by authentication", ["why"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "rewards_api_request_seconds", "Time to answer a request, by route", ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )  # fmt: skip


class RateLimits:
    """Sliding-window-counter limits per client address and per token subject, in this process
    (several API processes would share a store such as Redis instead).

    The sliding-window counter costs the same at any rate; the moving window keeps every
    hit of the window and slowed each request down as the log grew (bench/api_load.py
    fell from 200 to 76 requests per second within 20 s from one address).
    """

    def __init__(self, per_ip: str, per_subject: str) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._per_ip = parse(per_ip)
        self._per_subject = parse(per_subject)

    def allow_ip(self, address: str) -> bool:
        return bool(self._limiter.hit(self._per_ip, "ip", address))

    def allow_subject(self, subject: str) -> bool:
        return bool(self._limiter.hit(self._per_subject, "sub", subject))


def create_app(engine: Engine, settings: Settings, verifier: TokenVerifier | None) -> FastAPI:
    """The API over `engine`; `verifier` None means no issuer is configured (all 401)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # sync routes run in anyio's thread pool: bound it, so that a burst queues instead
        # of making every request slower
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        yield

    app = FastAPIOffline(  # /docs and /redoc from assets served here: no CDN, works offline
        static_url="/docs-assets",
        lifespan=lifespan,
        title="Ignition rewards engine",
        version="1",
        description="Uptime, eligibility and reward snapshots. Bearer JWTs from the "
        "configured OIDC provider; roles: supplier, finance, admin.",
    )
    app.state.engine = engine
    app.state.settings = settings
    app.state.verifier = verifier
    app.state.metrics = Metrics()
    app.state.limiter = RateLimits(settings.rate_limit_per_ip, settings.rate_limit_per_subject)
    app.state.surges = WriteCounter(settings.surges)

    app.state.trusted_proxies = networks(settings.trusted_proxies)
    gates: list[Gate] = [bearer_gate]  # the pages add theirs (rewards/web/app.py)
    app.state.gates = gates
    app.add_middleware(Guard, state=app.state)
    problems.install(app)
    openapi.install(app)

    for router in ROUTERS:
        app.include_router(router)

    if settings.dev_issuer_enabled:

        @app.get("/.well-known/jwks.json", include_in_schema=False)
        def jwks() -> dict[str, Any]:
            return dev_issuer(settings).jwks()

    return app
