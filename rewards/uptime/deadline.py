"""An httpx transport whose every socket operation ends by a deadline (issue 12 item 16).

httpx's timeouts are per socket operation, so a server that drips a byte a second never
times out and could hold a page, and the job's lock, forever. Here each read, write and
connect waits at most until the deadline of the page in flight on its thread, so a whole
page, headers included, takes no longer than that.
"""

from __future__ import annotations

import ssl
import threading
import time
import typing

import httpcore
import httpx


class PageDeadline(threading.local):
    """The monotonic time by which the page in flight on this thread must be done."""

    at: float | None = None

    def timeout(self, timeout: float | None) -> float | None:
        """`timeout` shortened to what is left before the deadline; raises ReadTimeout
        when nothing is left."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the page's deadline has passed")
        return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: PageDeadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.timeout(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.timeout(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._deadline.timeout(timeout))
        return _Stream(inner, self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, deadline: PageDeadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, self._deadline.timeout(timeout), local_address, socket_options
        )
        return _Stream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, self._deadline.timeout(timeout), socket_options
        )
        return _Stream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_transport(deadline: PageDeadline) -> httpx.HTTPTransport:
    """An HTTP transport (no proxy) whose sockets honour `deadline`."""
    transport = httpx.HTTPTransport()
    # httpx takes no network backend of its own; its pool is swapped for one that has ours.
    transport._pool = httpcore.ConnectionPool(network_backend=_Backend(deadline))
    return transport
