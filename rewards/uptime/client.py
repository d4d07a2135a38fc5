"""HTTP client of the uptime API (DESIGN 6): one page at a time, retried with backoff.

A page either comes back decoded, or the call raises UptimeApiError with a reason a
person can act on. Transient failures (network errors, 5xx, 429, truncated or non-JSON
bodies) are retried; contract violations (oversized pages, wrong shapes, nesting past any
sane depth, duplicate keys in the page, refused token) are not.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from rewards.core import RetryPolicy
from rewards.uptime.deadline import PageDeadline, deadline_transport
from rewards.uptime.records import DuplicateKeys

STREAMS = ("heartbeats", "devices")


class UptimeApiError(RuntimeError):
    """A page could not be had; the message says why and what the engine did."""


class TokenRefused(UptimeApiError):
    """The uptime API answered 401 or 403: the service token is wrong or revoked. Never
    retried; the caller raises an alert (issue 12 item 18)."""

    def __init__(self, status: int) -> None:
        super().__init__(
            f"uptime API refused the service token (HTTP {status}): it is wrong or revoked; "
            "check REWARDS_UPTIME_API_TOKEN"
        )
        self.status = status


class LimitExceeded(UptimeApiError):
    """A run or page went past one of its limits (time, bytes, pages); never retried."""


class _Retryable(UptimeApiError):
    """A failure the next attempt may not have; fetch_page retries it."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


@dataclass(frozen=True)
class Page:
    """One decoded page: the raw records (validated later, one by one) and the next cursor."""

    records: list[Any]
    next_cursor: str | None
    has_more: bool
    source: str
    attempts: int


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | DuplicateKeys:
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else DuplicateKeys(pairs)


# The standard library's decoder, not orjson: orjson silently keeps the last of duplicate
# keys, so a record could say two things and the engine would believe one. The hook costs
# about 7 ms per 10,000-heartbeat page (orjson 4 ms, json + hook 11 ms), against some
# 20 ms to validate the page and more to store it. It also keeps what orjson refuses (NaN,
# integers beyond 64 bits, lone surrogates) so such records are quarantined one by one.
_DECODER = json.JSONDecoder(object_pairs_hook=_json_object)


def decode_json(body: bytes) -> Any:
    """The JSON value of a UTF-8 body; an object naming a key twice becomes DuplicateKeys.

    Raises UnicodeDecodeError or ValueError for a body that is not UTF-8 JSON, and
    RecursionError for one nested deeper than the interpreter's recursion limit."""
    return _DECODER.decode(body.decode("utf-8", errors="strict"))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class UptimeClient:
    """Fetches pages of one uptime API with a bearer service token."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 30.0,
        max_page_bytes: int = 32 * 1024 * 1024,
        page_timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._deadline = PageDeadline()
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout_s,
            transport=deadline_transport(self._deadline),
        )
        self.base_url = base_url
        self.max_page_bytes = max_page_bytes
        self.page_timeout_s = page_timeout_s
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.retries = 0
        self.bytes_read = 0  # every body byte received, failed attempts' too

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> UptimeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def fetch_page(
        self,
        stream: str,
        cursor: str | None,
        limit: int,
        *,
        deadline: float | None = None,
        max_bytes: int | None = None,
    ) -> Page:
        """The page of `stream` after `cursor`, retried per the RetryPolicy.

        The page, retries and waits included, is done within `page_timeout_s` and by
        `deadline` (a time.monotonic() value: the run's), reading at most `max_bytes` of
        bodies (what is left of the run's budget); past either it raises LimitExceeded."""
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}")
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        source = f"{self.base_url}/v1/{stream}?cursor={cursor or ''}&limit={limit}"
        own = time.monotonic() + self.page_timeout_s
        if deadline is None or own <= deadline:
            limit_at = own
            why = f"the page took longer than page_timeout_s={self.page_timeout_s:g} s"
        else:
            limit_at, why = deadline, "the run's deadline passed during the page"
        reason, read_before = "", self.bytes_read
        self._deadline.at = limit_at
        try:
            for attempt in range(1, self.retry.max_attempts + 1):
                try:
                    left = (
                        None if max_bytes is None else max_bytes - (self.bytes_read - read_before)
                    )
                    body = self._get(f"/v1/{stream}", params, max_bytes=left)
                    return decode_page(stream, body, limit=limit, source=source, attempt=attempt)
                except _Retryable as failure:
                    if time.monotonic() >= limit_at:
                        raise LimitExceeded(f"{stream} page at cursor {cursor!r}: {why}") from None
                    reason = failure.reason
                    if attempt == self.retry.max_attempts:
                        break
                    wait = failure.wait_s
                    if wait is None:
                        ceiling = min(
                            self.retry.backoff_max_s, self.retry.backoff_base_s * 2 ** (attempt - 1)
                        )
                        wait = random.uniform(ceiling / 2, ceiling)  # jitter spreads retries
                    if time.monotonic() + wait >= limit_at:
                        raise LimitExceeded(
                            f"{stream} page at cursor {cursor!r}: {why} (waiting {wait:.1f} s "
                            f"to retry after: {reason})"
                        ) from None
                    self.retries += 1
                    self._sleep(wait)
        finally:
            self._deadline.at = None
        raise UptimeApiError(
            f"{stream} page at cursor {cursor!r} failed after {self.retry.max_attempts} "
            f"attempts; last: {reason}. The cursor stays where the last good page left it."
        )

    def _get(self, path: str, params: dict[str, str | int], *, max_bytes: int | None) -> bytes:
        budget = max_bytes if max_bytes is not None else self.max_page_bytes
        try:
            with self._http.stream("GET", path, params=params) as response:
                status = response.status_code
                if status == 429:
                    wait = _retry_after(response.headers.get("retry-after"))
                    if wait is not None and wait > self.retry.max_retry_after_s:
                        raise UptimeApiError(
                            f"uptime API asked to retry after {wait:.0f} s, more than the "
                            f"{self.retry.max_retry_after_s:.0f} s allowed (max_retry_after_s)"
                        )
                    raise _Retryable("HTTP 429 Too Many Requests", wait)
                if status in (401, 403):
                    raise TokenRefused(status)
                if status >= 500:
                    raise _Retryable(f"HTTP {status} from the uptime API")
                if status != 200:
                    raise UptimeApiError(f"uptime API answered HTTP {status} to {path}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit():
                    self._check_size(int(declared), budget)
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    self.bytes_read += len(chunk)
                    self._check_size(size, budget)
                    chunks.append(chunk)
                kind = response.headers.get("content-type", "")
                if "json" not in kind:
                    raise _Retryable(f"the body is {kind or 'untyped'}, not JSON")
                return b"".join(chunks)
        except httpx.TransportError as exc:
            raise _Retryable(f"network error: {type(exc).__name__}: {exc}") from None

    def _check_size(self, size: int, budget: int) -> None:
        if size > self.max_page_bytes:
            raise UptimeApiError(
                f"page of {size} bytes exceeds max_page_bytes={self.max_page_bytes}; "
                "refusing it rather than running out of memory"
            )
        if size > budget:
            raise LimitExceeded(
                f"the run's byte budget (ingest_max_bytes) is spent: {budget} bytes were "
                f"left and the page has at least {size}"
            )


def decode_page(stream: str, body: bytes, *, limit: int, source: str, attempt: int) -> Page:
    """The page of `stream` in `body`, or the reason it is not one: UptimeApiError for a
    broken contract, _Retryable for a body that may be whole on the next try. Never any
    other exception, whatever the body (issue 12 item 17)."""
    try:
        document = decode_json(body)
    except UnicodeDecodeError as bad:
        raise _Retryable(f"the body is not valid UTF-8 (byte {bad.start} of {len(body)})") from None
    except ValueError:
        raise _Retryable(f"truncated or invalid JSON body ({len(body)} bytes)") from None
    except RecursionError:
        raise UptimeApiError(
            f"uptime API page ({len(body)} bytes) is nested deeper than can be decoded; "
            "refused as malformed"
        ) from None
    if isinstance(document, DuplicateKeys):
        raise UptimeApiError(
            f"uptime API page has duplicate key {document.repeated!r}; contract broken"
        )
    if not isinstance(document, dict) or not isinstance(document.get(stream), list):
        raise UptimeApiError(f"uptime API page has no {stream!r} list; contract broken")
    records = document[stream]
    if len(records) > limit:
        raise UptimeApiError(
            f"uptime API returned {len(records)} records for limit={limit}; "
            "an oversized page is refused"
        )
    next_cursor, has_more = document.get("next_cursor"), document.get("has_more")
    if not isinstance(has_more, bool):
        raise UptimeApiError("uptime API page lacks a boolean 'has_more'; contract broken")
    if next_cursor is not None and (
        not isinstance(next_cursor, str) or not 0 < len(next_cursor) <= 1024
    ):
        raise UptimeApiError("uptime API page has an invalid 'next_cursor'; contract broken")
    if has_more and next_cursor is None:
        raise UptimeApiError("uptime API says has_more but gives no next_cursor")
    return Page(records, next_cursor, has_more, source, attempt)
