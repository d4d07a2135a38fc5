"""An API served over loopback HTTP whose verifier fetches its keys from a real JWKS server
on loopback (a separate uvicorn server, as an OIDC provider would be), for the tests of the
API's edge: body caps, forwarded addresses, error documents, strict inputs."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine

from rewards.api.app import create_app
from rewards.api.dev_issuer import DEV_ISSUER, DevIssuer
from rewards.api.verifier import make_verifier
from rewards.settings import Settings, get_settings
from rewards.sim.server import BackgroundServer

PROBLEM = "application/problem+json"
CHUNK = b"x" * 65_536


def inside_one_rate_window(margin_s: float = 15.0, window_s: int = 60) -> None:
    """Wait, if need be, until at least `margin_s` are left of the rate limiter's current
    window. Its windows are aligned to the wall clock, and its sliding-window counter
    weights the previous window's count, so a burst straddling a window's edge lets one
    more request through than the limit. A test that counts refusals must stay inside
    one window; it failed about once in ten full runs before this wait."""
    left = window_s - time.time() % window_s
    if left < margin_s:
        time.sleep(left + 0.05)


@dataclass
class Served:
    url: str
    settings: Settings
    issuer: DevIssuer

    def token(self, subject: str = "admin.example.org", *roles: str) -> str:
        chosen = roles or ("admin",)
        return self.issuer.token(subject, chosen, now=datetime.now(UTC), ttl=timedelta(minutes=10))

    def bearer(self, subject: str = "admin.example.org", *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, *roles)}"}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=30, **kwargs)


@contextmanager
def jwks_server(issuer: DevIssuer) -> Iterator[str]:
    """The issuer's JWKS served over loopback HTTP; yields its URL."""
    provider = FastAPI()
    provider.get("/.well-known/jwks.json")(issuer.jwks)
    with BackgroundServer(provider) as server:
        yield f"{server.url}/.well-known/jwks.json"


@contextmanager
def served_api(
    engine: Engine,
    tmp: Path,
    extend: Callable[[FastAPI], None] | None = None,
    **overrides: object,
) -> Iterator[Served]:
    """The API over `engine` on loopback (`extend` may add routes to it first), trusting
    tokens of a development key served as a real JWKS."""
    issuer = DevIssuer(tmp / "issuer.pem", "ignition-rewards")
    with jwks_server(issuer) as url:
        settings = get_settings(
            auth_issuer=DEV_ISSUER,
            auth_jwks_url=url,
            auth_audience="ignition-rewards",
            season="ignition-s2",
            surge_min_writes=10_000,
            **overrides,
        )
        verifier = make_verifier(settings)
        assert verifier is not None
        app = create_app(engine, settings, verifier)
        if extend is not None:
            extend(app)
        with BackgroundServer(app) as server:
            yield Served(server.url, settings, issuer)


def stream_chunked(url: str, path: str, headers: dict[str, str], budget: int) -> tuple[int, int]:
    """POST an endless chunked body to `path` until the server answers or `budget` bytes
    are sent; returns the status (0: no answer) and the body bytes sent before it."""
    where = urlsplit(url)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Transfer-Encoding: chunked"]
    lines += ["Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
    framed = b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n"
    sent = 0
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while sent < budget:
            if select.select([sock], [], [], 0.01)[0]:
                break
            try:
                sock.sendall(framed)
            except OSError:
                break
            sent += len(CHUNK)
        else:
            return 0, sent
        answer = b""
        while b"\r\n" not in answer:
            more = sock.recv(4096)
            if not more:
                break
            answer += more
    return int(answer.split()[1]), sent
