"""The uptime API simulator served over HTTP (DESIGN 6), with fault injection.

The heartbeat feed streams (DESIGN 8): a page is cut from the windows it spans, each made
on demand from the seed, and its cursor says where it stopped as "window.offset", so the
server keeps no state per client and any page size gives the same deliveries. Device
records are served from memory with decimal offsets. Faults are drawn from a generator
seeded by the fault seed, so a run's sequence of faults is reproducible.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import socket
import threading
import time
from dataclasses import dataclass
from functools import cached_property

import orjson
import polars as pl
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rewards.sim.feed import Feed
from rewards.sim.fleet import FleetSpec, device_feed, fleet_feed
from rewards.sim.records import NUMERIC

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


class BadCursor(ValueError):
    """A cursor this feed did not hand out."""


def heartbeat_page(feed: Feed, cursor: str, limit: int) -> tuple[pl.DataFrame, str, bool]:
    """Up to `limit` deliveries after `cursor` ("window.offset"; empty: the beginning), in
    the log's columns, the cursor after them, and whether more follow."""
    try:
        window, offset = (int(part) for part in (cursor or "0.0").split("."))
    except ValueError:
        raise BadCursor(cursor) from None
    if not 0 <= window <= feed.windows or offset < 0:
        raise BadCursor(cursor)
    parts = []
    while limit > 0 and window < feed.windows:
        rows = feed.window(window)
        part = rows.slice(offset, limit)
        parts.append(feed.render(part))
        limit -= part.height
        offset = min(offset + part.height, rows.height)
        if offset == rows.height:
            window, offset = window + 1, 0
    page = pl.concat(parts) if parts else feed.render(pl.DataFrame(schema=NUMERIC))
    return page, f"{window}.{offset}", window < feed.windows


class UptimeSimulator:
    """Serves one simulated fleet: heartbeats streamed window by window, devices whole."""

    def __init__(self, spec: FleetSpec, *, token: str, faults: Faults | None = None) -> None:
        self.spec = spec
        self.token = token
        self.faults = faults or Faults()
        self.feed = fleet_feed(spec)
        self.devices = device_feed(spec)
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._feed_lock = threading.Lock()  # the feed keeps its last windows: one user
        self.requests = 0

    @cached_property
    def heartbeats(self) -> pl.DataFrame:
        """The whole heartbeat delivery log at once, for checks at small sizes; serving
        never makes it. Its own feed: the served one may be busy on another thread."""
        return fleet_feed(self.spec).log()

    def _heartbeat_page(self, cursor: str, limit: int) -> tuple[pl.DataFrame, str, bool]:
        with self._feed_lock:
            return heartbeat_page(self.feed, cursor, limit)

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
        stream = request.url.path.rsplit("/", 1)[-1]
        cursor = request.query_params.get("cursor") or ""
        try:
            limit = int(request.query_params.get("limit") or 1000)
            offset = int(cursor or 0) if stream == "devices" else 0
            if offset < 0 or not 0 < limit <= MAX_LIMIT:
                raise ValueError
        except ValueError:
            return JSONResponse(
                {"error": f"cursor must be one handed out and limit within 1..{MAX_LIMIT}"},
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
        if stream == "heartbeats":
            try:
                # Making a window is CPU work: off the event loop.
                page, next_cursor, has_more = await asyncio.to_thread(
                    self._heartbeat_page, cursor, limit
                )
            except BadCursor:
                return JSONResponse(
                    {"error": "cursor must be one this feed handed out"}, status_code=400
                )
            rows = _heartbeat_rows(page)
        else:
            rows = _device_rows(self.devices.slice(offset, limit))
            end = min(offset + limit, self.devices.height)
            next_cursor, has_more = str(end), end < self.devices.height
        body = (
            f'{{"{stream}":[' + ",".join(rows) + f'],"next_cursor":"{next_cursor}",'
            f'"has_more":{"true" if has_more else "false"}}}'
        ).encode()
        if fault == "truncate":
            body = body[: len(body) // 2]
        return Response(body, media_type="application/json")


def create_sim_app(simulator: UptimeSimulator) -> Starlette:
    """The ASGI app serving `simulator` under /v1."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "windows": simulator.feed.windows})

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
        deadline = time.monotonic() + 30  # a loaded 2-core machine took over 10 s once
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"simulator did not start on {self.url}")
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
