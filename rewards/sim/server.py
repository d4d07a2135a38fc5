"""The uptime API simulator served over HTTP (DESIGN 6), with fault injection.

Cursors are decimal offsets into the delivery log. Faults are drawn from a generator seeded
by the fault seed, so a run's sequence of faults is reproducible.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import socket
import threading
import time
from dataclasses import dataclass

import orjson
import polars as pl
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rewards.sim.fleet import FleetSpec, delivery_log, device_feed

MAX_LIMIT = 50_000
_TS = "%Y-%m-%dT%H:%M:%S%.6fZ"


@dataclass(frozen=True)
class Faults:
    """Shares of requests that fail in each way (0 to 1), and how."""

    error_rate: float = 0.0  # HTTP 500
    throttle_rate: float = 0.0  # HTTP 429 with Retry-After
    retry_after_s: int = 1
    slow_rate: float = 0.0  # answered after `slow_s`
    slow_s: float = 0.5
    truncate_rate: float = 0.0  # 200 with the body cut in half
    seed: int = 0


def _as_time(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Datetime("us", "UTC")).dt.to_string(_TS)


def _heartbeat_rows(page: pl.DataFrame) -> list[str]:
    # Simulated identifiers are plain ASCII, so the JSON can be assembled without escaping;
    # malformed records carry their own verbatim JSON in `raw`.
    row = pl.concat_str(
        [
            pl.lit('{"device_id":"'),
            pl.col("device_id"),
            pl.lit('","observed_at":"'),
            _as_time("observed_us"),
            pl.lit('","boot_id":"'),
            pl.col("boot_id"),
            pl.lit('","agent_version":"'),
            pl.col("agent_version"),
            pl.lit('"}'),
        ]
    )
    return page.select(pl.coalesce(pl.col("raw"), row)).to_series().to_list()


def _device_rows(page: pl.DataFrame) -> list[str]:
    records = page.select(
        "device_id",
        "owner_id",
        "gpu_model",
        "gpu_count",
        _as_time("registered_us").alias("registered_at"),
        _as_time("updated_us").alias("updated_at"),
        "status",
        "updated_by",
    ).to_dicts()
    return [orjson.dumps(r).decode() for r in records]


class UptimeSimulator:
    """Holds one simulated fleet's delivery logs and answers page requests."""

    def __init__(self, spec: FleetSpec, *, token: str, faults: Faults | None = None) -> None:
        self.spec = spec
        self.token = token
        self.faults = faults or Faults()
        self.heartbeats = delivery_log(spec)
        self.devices = device_feed(spec)
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self.requests = 0

    def _fault(self) -> str | None:
        with self._lock:
            self.requests += 1
            draw = self._rng.random()
        f = self.faults
        for name, rate in (
            ("error", f.error_rate),
            ("throttle", f.throttle_rate),
            ("truncate", f.truncate_rate),
            ("slow", f.slow_rate),
        ):
            if draw < rate:
                return name
            draw -= rate
        return None

    async def page(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            return JSONResponse({"error": "missing or invalid service token"}, status_code=401)
        try:
            offset = int(request.query_params.get("cursor") or 0)
            limit = int(request.query_params.get("limit") or 1000)
            if offset < 0 or not 0 < limit <= MAX_LIMIT:
                raise ValueError
        except ValueError:
            return JSONResponse(
                {"error": f"cursor must be an offset and limit within 1..{MAX_LIMIT}"},
                status_code=400,
            )
        fault = self._fault()
        if fault == "error":
            return JSONResponse({"error": "simulated internal error"}, status_code=500)
        if fault == "throttle":
            return JSONResponse(
                {"error": "slow down"},
                status_code=429,
                headers={"Retry-After": str(self.faults.retry_after_s)},
            )
        if fault == "slow":
            await asyncio.sleep(self.faults.slow_s)
        stream = request.url.path.rsplit("/", 1)[-1]
        log, render = (
            (self.heartbeats, _heartbeat_rows)
            if stream == "heartbeats"
            else (self.devices, _device_rows)
        )
        rows = render(log.slice(offset, limit))
        end = min(offset + limit, log.height)
        has_more = end < log.height
        body = (
            f'{{"{stream}":[' + ",".join(rows) + f'],"next_cursor":"{end}",'
            f'"has_more":{"true" if has_more else "false"}}}'
        ).encode()
        if fault == "truncate":
            body = body[: len(body) // 2]
        return Response(body, media_type="application/json")


def create_sim_app(simulator: UptimeSimulator) -> Starlette:
    """The ASGI app serving `simulator` under /v1."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "heartbeats": simulator.heartbeats.height})

    return Starlette(
        routes=[
            Route("/v1/heartbeats", simulator.page),
            Route("/v1/devices", simulator.page),
            Route("/healthz", healthz),
        ]
    )


class BackgroundServer:
    """Serve `app` with uvicorn on a thread of this process (demo and tests)."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.url = f"http://{host}:{port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                proxy_headers=False,  # the API decides whom to trust (trusted_proxies)
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"simulator did not start on {self.url}")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
