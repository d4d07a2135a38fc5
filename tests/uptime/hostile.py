"""A deliberately broken uptime API, served over real HTTP, for the client's edge cases."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
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


def drip(body: str, every_s: float, *, status: int = 200) -> Response:
    """`body` one byte at a time, `every_s` apart: each read succeeds, the page never ends
    soon (httpx's per-read timeouts never fire)."""

    async def chunks() -> AsyncIterator[bytes]:
        for byte in body.encode():
            yield bytes([byte])
            await asyncio.sleep(every_s)

    return StreamingResponse(chunks(), status_code=status, media_type="application/json")


def slow(body: str, after_s: float) -> Response:
    """`body`, whole, after `after_s` (a slow page that is not malformed)."""

    async def late() -> AsyncIterator[bytes]:
        await asyncio.sleep(after_s)
        yield body.encode()

    return StreamingResponse(late(), media_type="application/json")


class HeaderDripServer:
    """A raw TCP server that answers every connection with a status line and then headers
    one byte at a time, forever (until stopped): no HTTP framework would do this."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            try:
                connection.sendall(b"HTTP/1.1 200 OK\r\n")
                while not self._stop.wait(self.every_s):
                    connection.sendall(b"x")
            except OSError:
                return

    def __enter__(self) -> HeaderDripServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
