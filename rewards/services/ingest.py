"""Use case: pull a stream of the uptime API until caught up, one transaction per page.

Each page's valid records, its quarantined records and the cursor after it commit
together, so a crash at any point neither loses nor doubles anything: the next run starts
from the last committed cursor and upserts are idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from rewards.core.frames import to_us
from rewards.core.policy import SeasonPolicy
from rewards.db import state
from rewards.db.devices import store_devices
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import store_heartbeats
from rewards.uptime.client import Page, UptimeApiError, UptimeClient
from rewards.uptime.records import validate_devices, validate_heartbeats

@dataclass
class IngestReport:
    """What a pull did; `error` says why it stopped early, if it did."""

    stream: str
    pages: int = 0
    pulled: int = 0
    stored: int = 0
    quarantined: int = 0
    retries: int = 0
    caught_up: bool = False
    error: str | None = None
    cursor: str | None = None
    seen_cursors: set[str] = field(default_factory=set, repr=False)


class CursorError(UptimeApiError):
    """The API's cursor repeated or went backwards: following it could loop or re-read."""


def _check_progress(report: IngestReport, cursor: str | None, page: Page) -> None:
    nxt = page.next_cursor
    if nxt is None or (not page.has_more and nxt == cursor):
        return
    if nxt == cursor or nxt in report.seen_cursors:
        raise CursorError(f"uptime API repeated cursor {nxt!r}; stopping to avoid a loop")
    if cursor is not None and cursor.isdigit() and nxt.isdigit() and int(nxt) < int(cursor):
        raise CursorError(f"uptime API cursor went backwards from {cursor!r} to {nxt!r}")


def pull_stream(
    *,
    engine: Engine,
    client: UptimeClient,
    stream: str,
    policy: SeasonPolicy,
    page_size: int,
    max_skew: timedelta,
    clock: Callable[[], datetime],
    on_page: Callable[[IngestReport], None] | None = None,
    max_pages: int | None = None,
) -> IngestReport:
    """Pull `stream` from its stored cursor until the API has no more (or `max_pages`)."""
    report = IngestReport(stream=stream)
    with unit_of_work(engine) as session:
        cursor = state.get_cursor(session, stream)
    report.cursor = cursor
    retries_before = client.retries
    try:
        while max_pages is None or report.pages < max_pages:
            page = client.fetch_page(stream, cursor, page_size)
            _check_progress(report, cursor, page)
            now = clock()
            with unit_of_work(engine) as session:
                if stream == "heartbeats":
                    frame, rejected = validate_heartbeats(page.records, now=now, max_skew=max_skew)
                    stored = store_heartbeats(
                        session.connection(), frame, policy,
                        received_at_us=to_us(now),
                    )
                else:
                    devices, rejected = validate_devices(page.records)
                    stored = store_devices(session, devices, now=now, actor="uptime-api",
                                           source=page.source)
                state.quarantine(session, stream=stream, source=page.source,
                                 items=[(r.raw, r.reason) for r in rejected], now=now)
                next_cursor = page.next_cursor if page.next_cursor is not None else cursor
                state.set_cursor(session, stream, next_cursor, now=now)
            if cursor is not None:
                report.seen_cursors.add(cursor)
            cursor = report.cursor = next_cursor
            report.pages += 1
            report.pulled += len(page.records)
            report.stored += stored
            report.quarantined += len(rejected)
            report.retries = client.retries - retries_before
            if on_page:
                on_page(report)
            if not page.has_more:
                report.caught_up = True
                break
    except UptimeApiError as exc:
        report.error = str(exc)
    report.retries = client.retries - retries_before
    return report

