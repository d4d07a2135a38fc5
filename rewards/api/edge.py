"""The API's edge, in front of every route: who the client is, the per-address rate limit,
the body cap, refusing unauthenticated bodies unread, and a problem document for anything
unhandled (DESIGN 10).

* The client's address is the TCP peer's, unless the peer is a configured trusted proxy
  (`trusted_proxies`, none by default): then it is the last address the proxies added to
  the one header they write (`trusted_proxy_header`: `X-Forwarded-For` or `Forwarded`,
  RFC 7239) that is not itself a trusted proxy. The other header is ignored: a proxy
  passes it through from the client untouched. A client cannot pick its own address to
  escape the limit.
* Request bodies are capped while they stream, Content-Length or chunked: 413 as soon as
  the cap is passed, with nothing more read. The cap is 64 KiB, except on the incident
  routes, whose largest valid body (10,000 device ids) is bigger (`body_cap`).
* A request with a body to a route that needs a caller is checked before its body is
  read: FastAPI reads a body before the route's dependencies run, so without this a
  tokenless client could make the server read and parse whatever it sends. The checks
  (`gates`) come from the API (bearer token) and the pages (session).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio.to_thread
from fastapi import HTTPException, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rewards.api.deps import principal
from rewards.api.problems import (
    TYPES,
    Problem,
    http_problem,
    mapped_problem,
    problem_of,
    problem_response,
)
from rewards.api.schemas import MAX_SCOPE_DEVICES

log = logging.getLogger("rewards.api")
MAX_BODY_BYTES = 64 * 1024
# An incident's scope may name MAX_SCOPE_DEVICES identifiers of up to 128 characters: the
# admin's incident routes get a cap that fits the largest valid body (each id quoted, with
# ", " between), the rest of the body within the usual cap. The bearer gate still refuses
# a body without a valid admin token unread.
INCIDENT_BODY_BYTES = MAX_SCOPE_DEVICES * (128 + 4) + MAX_BODY_BYTES
INCIDENT_ROUTES = "/v1/admin/incidents"


def body_cap(scope: Scope) -> int:
    """The most bytes a request's body may have: INCIDENT_BODY_BYTES for declaring
    (POST /v1/admin/incidents) or editing (PATCH /v1/admin/incidents/{id}) an incident,
    the routes that read a scope; MAX_BODY_BYTES everywhere else."""
    path: str = scope["path"]
    method: str = scope["method"]
    if method == "POST" and path == INCIDENT_ROUTES:
        return INCIDENT_BODY_BYTES
    incident_id = path.removeprefix(INCIDENT_ROUTES + "/")
    if method == "PATCH" and incident_id != path and "/" not in incident_id:
        return INCIDENT_BODY_BYTES
    return MAX_BODY_BYTES


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Gate = Callable[[Scope], Awaitable[Response | None]]


def networks(specs: Sequence[str]) -> tuple[Network, ...]:
    """The networks of `specs` (addresses or CIDRs)."""
    return tuple(ipaddress.ip_network(spec, strict=False) for spec in specs)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


def _node(value: str) -> str:
    """The address of a Forwarded `for=` node: quotes, brackets and port removed."""
    node = value.strip().strip('"')
    if node.startswith("["):  # [2001:db8::1]:4711
        return node[1:].split("]", 1)[0]
    if node.count(":") == 1:  # 198.51.100.1:4711
        return node.split(":", 1)[0]
    return node


def _forwarded_chain(headers: list[tuple[bytes, bytes]], header: str) -> list[str]:
    """The client addresses the proxies recorded in `header` (`forwarded` or
    `x-forwarded-for`, lower case), first hop first."""
    name = header.encode()
    listed = ",".join(v.decode("latin-1") for k, v in headers if k == name)
    if header != "forwarded":
        return [hop.strip() for hop in listed.split(",") if hop.strip()]
    chain = []
    for element in listed.split(","):
        for pair in element.split(";"):
            key, _, value = pair.partition("=")
            if key.strip().lower() == "for":
                chain.append(_node(value))
    return chain


def client_address(
    scope: Scope, trusted: tuple[Network, ...], header: str = "x-forwarded-for"
) -> str:
    """The address the rate limit counts (see the module docstring); `header` is the one
    the trusted proxies write."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    for hop in reversed(_forwarded_chain(scope["headers"], header)):
        if not _trusted(hop, trusted):
            return hop
    return peer


def carries_body(scope: Scope) -> bool:
    """Whether the request says it has a body (Content-Length above 0, or chunked)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0 ")):
            return True
    return False


async def bearer_gate(scope: Scope) -> Response | None:
    """A body sent to an authenticated API route without a valid bearer token: 401 (the
    verified caller is kept for the route, so it is verified and counted once)."""
    path: str = scope["path"]
    if not path.startswith("/v1/") or path.startswith("/v1/explorer/"):
        return None
    if not carries_body(scope):
        return None
    request = Request(scope)
    try:
        await anyio.to_thread.run_sync(principal, request)
    except HTTPException as exc:
        return await http_problem(request, exc)
    return None


class Guard:
    """Per request: the client's address and its rate limit, the body cap, the gates, a
    bare 500 problem for any unhandled error (logged, never echoed) and the request
    counter for /metrics.

    Plain ASGI rather than an `@app.middleware("http")` function: Starlette's
    BaseHTTPMiddleware re-streams every response through a task and a queue, which cost
    more than the eligibility route's own work (py-spy, bench/api_load.py)."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["rewards.started"] = time.perf_counter()
        try:
            refusal = await self._refusal(scope)
        except Exception as exc:  # a check that needed the database or the provider's keys
            refusal = await _answer(scope, exc)
        if refusal is not None:
            await refusal(scope, receive, send)
            self._count(scope, refusal.status_code)
            return
        status: list[int] = []
        received, cap = 0, body_cap(scope)

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise _too_large(cap)
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, capped, sending)
        except Exception as exc:
            if status:  # the response had begun: nothing more can be said on it
                raise
            answer = await _answer(scope, exc, pages=False)
            status.append(answer.status_code)
            await answer(scope, receive, send)
        self._count(scope, status[0] if status else 500)

    async def _refusal(self, scope: Scope) -> Response | None:
        """Why the request is refused before the app sees it, if it is."""
        address = client_address(
            scope, self.state.trusted_proxies, self.state.settings.trusted_proxy_header
        )
        scope["client"] = (address, (scope.get("client") or ("", 0))[1])
        if not self.state.limiter.allow_ip(address):
            self.state.metrics.refused.labels("rate limit: address").inc()
            return problem_response(
                TYPES["rate-limited"], "too many requests", headers={"Retry-After": "60"}
            )
        length = dict(scope["headers"]).get(b"content-length")
        cap = body_cap(scope)
        if length is not None and (not length.isdigit() or int(length) > cap):
            return await http_problem(Request(scope), _too_large(cap))
        gates: list[Gate] = self.state.gates
        for gate in gates:
            refused = await gate(scope)
            if refused is not None:
                return refused
        return None

    def _count(self, scope: Scope, status: int) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        self.state.metrics.requests.labels(route, str(status)).inc()
        took = time.perf_counter() - scope["rewards.started"]
        self.state.metrics.latency.labels(route).observe(took)


async def _answer(scope: Scope, exc: Exception, *, pages: bool = True) -> Response:
    """The response to an exception no route handled: the problem `problem_of` maps it to
    (through the app's HTTPException handler, so the pages show a page, when `pages`), else
    a bare 500 that says nothing internal (the error is logged, never echoed)."""
    request = Request(scope)
    problem = problem_of(exc)
    if problem is None:
        log.exception("unhandled error on %s %s", scope["method"], scope["path"])
        return problem_response(TYPES["internal-error"], "something went wrong")
    if pages:
        return await mapped_problem(request, problem)
    return await http_problem(request, problem)


def _too_large(cap: int) -> Problem:
    return Problem(TYPES["content-too-large"], f"request bodies here are capped at {cap} bytes")
