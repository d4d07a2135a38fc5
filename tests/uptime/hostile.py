"""A deliberately broken uptime API, served over real HTTP, for the client's edge cases."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[[Request, int], Response]


def hostile_app(handler: Handler) -> tuple[Starlette, list[Request]]:
    """An app answering /v1/{stream} with `handler(request, n)` (n counts requests)."""
    seen: list[Request] = []

    async def page(request: Request) -> Response:
        seen.append(request)
        return handler(request, len(seen))

    return Starlette(routes=[Route("/v1/heartbeats", page), Route("/v1/devices", page)]), seen


def json_response(body: str | bytes, status: int = 200, **headers: str) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def heartbeat(device: str = "gpu-1", at: str = "2024-04-25T08:00:00Z") -> str:
    return f'{{"device_id":"{device}","observed_at":"{at}","boot_id":"b","agent_version":"0.9.9"}}'


def page(*records: str, next_cursor: str | None = "1", has_more: bool = False) -> str:
    cursor = "null" if next_cursor is None else f'"{next_cursor}"'
    return (
        f'{{"heartbeats":[{",".join(records)}],"next_cursor":{cursor},'
        f'"has_more":{"true" if has_more else "false"}}}'
    )
