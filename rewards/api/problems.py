"""RFC 9457 problem documents: the one home of every error type the engine answers with.

Each type has a stable URI (`https://ignition-rewards.dev/problems/<slug>`), a title and a
status; clients branch on `type`, people read `detail`. `install` makes every error one
(DESIGN 10):

* an HTTPException takes the type its `Problem` names, else the type of its status;
* a request that does not match its schema is 422 with the errors listed by location,
  never echoing the rejected values (a NaN cannot be serialised, a secret must not be
  reflected);
* a use case's refusal (`rewards.services.errors.ServiceError`) takes the type of its
  kind: invalid 422, not-found 404, conflict and busy 409, rollback-refused 409; the API
  and the pages share this one mapping;
* a busy, locked or unreachable database is 503 with Retry-After, never 500, and so is
  an identity provider whose keys were never fetched (`problem_of` is the one mapping,
  used by the handlers and by the edge's checks that run before any route);
* anything unhandled is a 500 that says nothing internal (`rewards.api.edge.Guard`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from rewards.api.jwks import KeysUnavailable
from rewards.services.errors import ServiceError

log = logging.getLogger("rewards.api")

BASE = "https://ignition-rewards.dev/problems/"
MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_S = 5  # a busy or locked database usually frees up within seconds


@dataclass(frozen=True)
class ProblemType:
    slug: str
    title: str
    status: int

    @property
    def uri(self) -> str:
        return BASE + self.slug


TYPES = {
    kind.slug: kind
    for kind in (
        ProblemType("bad-request", "The request is malformed", 400),
        ProblemType("unauthorized", "A valid bearer token is required", 401),
        ProblemType("forbidden", "Not allowed", 403),
        ProblemType("not-found", "Not found", 404),
        ProblemType("method-not-allowed", "Method not allowed", 405),
        ProblemType("conflict", "Conflicts with the current state", 409),
        ProblemType("rollback-refused", "Publishing this would roll the season back", 409),
        ProblemType("content-too-large", "The request body is too large", 413),
        ProblemType("unsupported-media-type", "Unsupported media type", 415),
        ProblemType("invalid-request", "The request is invalid", 422),
        ProblemType("rate-limited", "Too many requests", 429),
        ProblemType("internal-error", "Internal error", 500),
        ProblemType("unavailable", "Temporarily unavailable", 503),
        ProblemType("database-unavailable", "The database is busy or unreachable", 503),
    )
}
# the generic type of each status; the specific ones are raised by name only
_SPECIFIC = {"database-unavailable", "rollback-refused"}
_BY_STATUS = {kind.status: kind for kind in TYPES.values() if kind.slug not in _SPECIFIC}


def type_of_status(status: int) -> ProblemType:
    """The problem type of an HTTP status (a generic `http-NNN` one for the rare others)."""
    known = _BY_STATUS.get(status)
    if known is not None:
        return known
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return ProblemType(f"http-{status}", title, status)


class Problem(HTTPException):
    """An HTTPException of a named problem type, with optional extension members."""

    def __init__(
        self,
        kind: ProblemType,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(kind.status, detail or kind.title, headers)
        self.kind = kind
        self.extensions = extensions


def problem_response(
    kind: ProblemType,
    detail: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    """The problem document of `kind` as a response."""
    body = {
        "type": kind.uri,
        "title": kind.title,
        "status": kind.status,
        "detail": detail or kind.title,
        **(extensions or {}),
    }
    return JSONResponse(body, status_code=kind.status, headers=headers, media_type=MEDIA_TYPE)


async def http_problem(request: Request, exc: Exception) -> Response:
    """Any HTTPException (the routes', FastAPI's, Starlette's 404 and 405) as a problem."""
    assert isinstance(exc, HTTPException)
    if isinstance(exc, Problem):
        kind, extensions = exc.kind, exc.extensions
    else:
        kind, extensions = type_of_status(exc.status_code), {}
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(kind, detail, headers=exc.headers, extensions=extensions)


async def validation_problem(request: Request, exc: Exception) -> Response:
    """A request that does not match its schema: 422 listing where and why, no values."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "loc": [part if isinstance(part, int) else str(part) for part in error["loc"]],
            "msg": str(error["msg"]),
            "type": str(error["type"]),
        }
        for error in exc.errors()
    ]
    return problem_response(
        TYPES["invalid-request"],
        "the request does not match its schema; `errors` says where",
        extensions={"errors": errors},
    )


def database_unavailable() -> Problem:
    """503 with Retry-After: the database is busy, locked or unreachable."""
    return Problem(
        TYPES["database-unavailable"],
        "the database is busy or unreachable; try again shortly",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def keys_unavailable() -> Problem:
    """503 with Retry-After: no key of the identity provider was ever fetched (DESIGN 10)."""
    return Problem(
        TYPES["unavailable"],
        "the identity provider's keys are not available yet; try again in a minute",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


# how each kind of refusal a use case raises is answered (rewards/services/errors.py)
_OF_SERVICE = {
    "invalid": TYPES["invalid-request"],
    "not-found": TYPES["not-found"],
    "conflict": TYPES["conflict"],
    "busy": TYPES["conflict"],
    "rollback-refused": TYPES["rollback-refused"],
    "unavailable": TYPES["unavailable"],
}


def problem_of(exc: BaseException) -> HTTPException | None:
    """The problem `exc` stands for: itself for an HTTPException, the type of its kind for
    a service's refusal (with its message), 503 for a busy, locked or unreachable database
    or for missing identity provider keys; None for anything else (a bug: the caller logs
    it and answers a bare 500)."""
    if isinstance(exc, HTTPException):
        return exc
    if isinstance(exc, ServiceError):
        return Problem(_OF_SERVICE[exc.kind], str(exc), **exc.extensions())
    if isinstance(exc, OperationalError | PoolTimeout):
        cause = getattr(exc, "orig", None) or exc
        log.warning(
            "database unavailable: %s: %s", type(cause).__name__, str(cause).splitlines()[0:1]
        )
        return database_unavailable()
    if isinstance(exc, KeysUnavailable):
        log.warning("identity provider keys unavailable: %s", exc)
        return keys_unavailable()
    return None


async def mapped_problem(request: Request, exc: Exception) -> Response:
    """An exception `problem_of` maps, through the app's HTTPException handler (so the
    pages render it as a page)."""
    problem = problem_of(exc)
    assert problem is not None
    handler = request.app.exception_handlers.get(HTTPException, http_problem)
    response: Response = await handler(request, problem)
    return response


def install(app: FastAPI) -> None:
    """Make every error `app` answers with a problem document."""
    app.add_exception_handler(HTTPException, http_problem)
    app.add_exception_handler(RequestValidationError, validation_problem)
    for mapped in (ServiceError, OperationalError, PoolTimeout, KeysUnavailable):
        app.add_exception_handler(mapped, mapped_problem)
