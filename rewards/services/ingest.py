"""Use case: pull a stream of the uptime API until caught up, one transaction per page.

Each page's valid records, its quarantined records and the cursor after it commit
together, so a crash at any point neither loses nor doubles anything: the next run starts
from the last committed cursor and upserts are idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from sqlalchemy import Engine

from rewards.core.frames import to_us
from rewards.core.policy import SeasonPolicy
from rewards.core.surges import SurgePolicy, surge_minutes
from rewards.db import state
from rewards.db.devices import store_devices, writes_per_minute
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import store_heartbeats
from rewards.services.alerts import list_alerts, raise_alert
from rewards.uptime.client import Page, UptimeApiError, UptimeClient
from rewards.uptime.records import Rejected, validate_devices, validate_heartbeats

log = logging.getLogger("rewards.ingest")


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
    alerts: int = 0  # metadata-write surges raised
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


@dataclass(frozen=True)
class _Fetched:
    page: Page
    heartbeats: pl.DataFrame | None
    devices: list[dict[str, Any]]
    rejected: list[Rejected]
    now: datetime


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
    surges: SurgePolicy | None = None,
) -> IngestReport:
    """Pull `stream` from its stored cursor until the API has no more (or `max_pages`).

    The next page is fetched and validated on a helper thread while the current one is
    stored; pages still commit strictly in order, each with the cursor after it. With
    `surges`, each page of the device stream is checked for a surge of metadata writes by
    one actor (DESIGN 1: the 2024 surge was noticed by chance), raising an alert.
    """
    report = IngestReport(stream=stream)
    with unit_of_work(engine) as session:
        cursor = state.get_cursor(session, stream)
    report.cursor = cursor
    retries_before = client.retries

    def fetch(after: str | None) -> _Fetched:
        page = client.fetch_page(stream, after, page_size)
        now = clock()
        if stream == "heartbeats":
            frame, rejected = validate_heartbeats(page.records, now=now, max_skew=max_skew)
            return _Fetched(page, frame, [], rejected, now)
        devices, rejected = validate_devices(page.records)
        return _Fetched(page, None, devices, rejected, now)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"fetch-{stream}") as pool:
        pending: Future[_Fetched] | None = pool.submit(fetch, cursor)
        try:
            while pending is not None:
                fetched = pending.result()
                page, pending = fetched.page, None
                _check_progress(report, cursor, page)
                next_cursor = page.next_cursor if page.next_cursor is not None else cursor
                if page.has_more and (max_pages is None or report.pages + 1 < max_pages):
                    pending = pool.submit(fetch, next_cursor)
                stored = _store(engine, stream, fetched, policy, cursor=next_cursor)
                if surges is not None and fetched.devices:
                    report.alerts += watch_metadata_writes(
                        engine, fetched.devices, surges, now=fetched.now
                    )
                if cursor is not None:
                    report.seen_cursors.add(cursor)
                cursor = report.cursor = next_cursor
                report.pages += 1
                report.pulled += len(page.records)
                report.stored += stored
                report.quarantined += len(fetched.rejected)
                report.retries = client.retries - retries_before
                if on_page:
                    on_page(report)
                report.caught_up = not page.has_more
        except UptimeApiError as exc:
            report.error = str(exc)
        finally:
            if pending is not None:
                pending.cancel()
    report.retries = client.retries - retries_before
    return report


def _store(
    engine: Engine, stream: str, fetched: _Fetched, policy: SeasonPolicy, *, cursor: str | None
) -> int:
    """One page's data, its quarantined records and the cursor after it: one transaction."""
    with unit_of_work(engine) as session:
        if fetched.heartbeats is not None:
            stored = store_heartbeats(
                session.connection(), fetched.heartbeats, policy, received_at_us=to_us(fetched.now)
            )
        else:
            stored = store_devices(
                session,
                fetched.devices,
                now=fetched.now,
                actor=FEED_ACTOR,
                source=fetched.page.source,
            )
        state.quarantine(
            session,
            stream=stream,
            source=fetched.page.source,
            items=[(r.raw, r.reason) for r in fetched.rejected],
            now=fetched.now,
        )
        observed = None
        if fetched.heartbeats is not None and fetched.heartbeats.height:
            latest = fetched.heartbeats.get_column("observed_at").max()
            observed = to_us(latest) if isinstance(latest, datetime) else None
        state.set_cursor(session, stream, cursor, now=fetched.now, observed_us=observed)
    return stored


FEED_ACTOR = "uptime-api"  # who wrote a registry record that does not say


def watch_metadata_writes(
    engine: Engine, records: list[dict[str, Any]], policy: SurgePolicy, *, now: datetime
) -> int:
    """Raise a `metadata-surge` alert for each (actor, minute) among `records` whose stored
    writes reach the surge threshold against that actor's previous minutes; once each.
    Returns how many alerts were raised."""
    minutes: dict[str, set[int]] = {}
    for record in records:
        actor = record.get("updated_by") or FEED_ACTOR
        minutes.setdefault(actor, set()).add(int(record["updated_at"].timestamp()) // 60)
    raised = 0
    for actor, touched in sorted(minutes.items()):
        since = datetime.fromtimestamp((min(touched) - policy.baseline_minutes) * 60, UTC)
        until = datetime.fromtimestamp((max(touched) + 1) * 60, UTC)
        with unit_of_work(engine) as session:
            counts = writes_per_minute(session, actor, since, until)
        for minute, writes, threshold in surge_minutes(counts, touched, policy):
            route = f"device-feed {datetime.fromtimestamp(minute * 60, UTC):%Y-%m-%dT%H:%MZ}"
            if any(a.route == route for a in list_alerts(engine, None, 1_000, actor=actor)):
                continue
            raise_alert(
                engine,
                kind="metadata-surge",
                route=route,
                actor=actor,
                writes=writes,
                threshold=threshold,
                block=False,  # the feed is not ours to block; an admin reviews and reverts
                now=now,
            )
            log.warning(
                "metadata surge: %s wrote %d device records in the minute %s (threshold %.1f)",
                actor, writes, route.split(" ")[1], threshold,
            )  # fmt: skip
            raised += 1
    return raised
