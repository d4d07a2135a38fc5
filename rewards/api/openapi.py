"""The OpenAPI document as clients need it: the bearer scheme declared (so `/docs` has an
"Authorize" button and generators know every /v1 route but the explorer takes a JWT), and
the refusals each operation can answer documented as RFC 9457 problem documents.

FastAPI documents only what a route declares; the API's authentication, rate limits and
body caps live in its edge (rewards/api/edge.py), so their answers are added here, once,
by the same rules the edge applies.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from rewards.api.problems import MEDIA_TYPE

BEARER = "bearer"
_PROBLEM = {
    "type": "object",
    "description": "An RFC 9457 problem document; `type` is stable, `detail` in words.",
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
    "required": ["type", "title", "status"],
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_WORDS = {
    "401": "No valid bearer token.",
    "403": "The token's roles do not allow this.",
    "404": "Nothing of that name, or not yours.",
    "409": "Conflicts with the current state (another run holds the job, or it is done).",
    "413": "The request body is too large.",
    "422": "The request is invalid; `errors` says where.",
    "429": "Too many requests; see Retry-After.",
    "503": "Temporarily unavailable (the database, the identity provider or a compute "
    "cluster); see Retry-After.",
}


def authenticated(path: str) -> bool:
    """Whether the edge asks a bearer token of `path` (as bearer_gate decides)."""
    return path.startswith("/v1/") and not path.startswith("/v1/explorer/")


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the documented schema (built once)."""

    def documented() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = with_refusals(schema)
        return app.openapi_schema

    app.openapi = documented  # type: ignore[method-assign]


def with_refusals(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the bearer scheme and each operation's problem responses."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from the configured OIDC provider.",
    }
    components.setdefault("schemas", {})["Problem"] = _PROBLEM
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            codes = ["429", "503"]
            if authenticated(path):
                operation["security"] = [{BEARER: []}]
                codes += ["401", "403"]
            else:
                operation["security"] = []
            if "{" in path or (method == "get" and authenticated(path)):
                codes.append("404")
            if method in ("post", "put", "patch", "delete"):
                codes += ["409", "413"]
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(
                    code,
                    {
                        "description": _WORDS[code],
                        "content": {
                            MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                        },
                    },
                )
    return schema
