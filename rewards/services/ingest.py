"""Use case: pull a stream of the uptime API until caught up, one transaction per page.

Each page's valid records, its quarantined records and the cursor after it commit
together, so a crash at any point neither loses nor doubles anything: the next run starts
from the last committed cursor and upserts are idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import polars as pl
from sqlalchemy import Engine

from rewards.archive import HeartbeatArchive
from rewards.core import (
    DEFAULT_YEARS,
    IngestLimits,
    SeasonPolicy,
    SurgePolicy,
    YearWindow,
    surge_windows,
    to_us,
)
from rewards.db import state
from rewards.db.devices import store_devices, writes_per_second
from rewards.db.engine import unit_of_work
from rewards.services.alerts import list_alerts, raise_alert
from rewards.services.heartbeats import KEEP_ALL, StoredBatch, store_heartbeats
from rewards.services.ingest_metrics import INGEST_METRICS, IngestMetrics
from rewards.uptime.client import (
    LimitExceeded,
    Page,
    TokenRefused,
    UptimeApiError,
    UptimeClient,
)
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
    committed: int = 0  # the stream's pages committed so far, this run's included
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


@dataclass
class _Spent:
    """What a run has used of its IngestLimits so far."""

    limits: IngestLimits
    deadline: float  # time.monotonic() by which the run ends
    bytes_before: int  # the client's bytes_read when the run began
    idle: int = 0
    idle_in_a_row: int = 0

    def count(self, report: IngestReport, page: Page, *, valid: int) -> bool:
        """Count `page`, which brought `valid` valid records, against the limits (raising
        LimitExceeded past one); True when it made no progress: no valid records though
        the API says there are more. A page of only quarantined records is no progress
        either: a hostile API could otherwise send look-alikes with fresh cursors forever."""
        idle = page.has_more and not valid
        self.idle, self.idle_in_a_row = self.idle + idle, (self.idle_in_a_row + 1) * idle
        where = f"after {report.pages} pages, the cursor at {report.cursor!r}"
        if self.idle_in_a_row > self.limits.max_idle_in_a_row:
            raise LimitExceeded(
                f"{self.idle_in_a_row} pages in a row brought no valid records though the API "
                f"said there were more (ingest_max_idle_in_a_row="
                f"{self.limits.max_idle_in_a_row}); stopped {where}"
            )
        if self.idle > self.limits.max_idle_pages:
            raise LimitExceeded(
                f"{self.idle} pages brought no valid records though the API said there were more "
                f"(ingest_max_idle_pages={self.limits.max_idle_pages}); stopped {where}"
            )
        return idle

    def refusal(self, pages: int) -> str | None:
        """Why the run may not fetch another page after `pages`, or None if it may."""
        if pages >= self.limits.max_pages:
            return f"the run's page budget is spent (ingest_max_pages={self.limits.max_pages})"
        if time.monotonic() >= self.deadline:
            return f"the run's deadline passed (ingest_deadline_s={self.limits.deadline_s:g})"
        return None


@dataclass(frozen=True)
class _Fetched:
    page: Page
    heartbeats: pl.DataFrame | None
    devices: list[dict[str, Any]]
    rejected: list[Rejected]
    now: datetime

    @property
    def valid(self) -> int:
        """How many of the page's records passed validation (the ones stored)."""
        return self.heartbeats.height if self.heartbeats is not None else len(self.devices)


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
    years: YearWindow = DEFAULT_YEARS,
    limits: IngestLimits | None = None,
    metrics: IngestMetrics = INGEST_METRICS,
    archive: HeartbeatArchive | None = None,
    db_window: timedelta | None = None,
) -> IngestReport:
    """Pull `stream` from its stored cursor until the API has no more (or `max_pages`).

    The next page is fetched and validated on a helper thread while the current one is
    stored; pages commit strictly in order, each with the cursor after it. A page without
    progress (no valid records, more promised) counts against `limits` and is committed
    only for its quarantined records. The run stays within `limits`, or fails with the
    reason (DESIGN 10). With `surges`, device pages are checked for a surge of metadata
    writes by one actor (DESIGN 1). Records with look-alike identifiers or times outside
    `years` are quarantined with their reason. Each page is counted in `metrics`. With
    `archive`, each page's raw heartbeats are archived (DESIGN 8) under the page's sequence
    number before the page commits, so a retried page replaces its earlier archive write;
    with `db_window`, the database keeps only raw heartbeats that recent on arrival.
    """
    limits = limits or IngestLimits()
    spent = _Spent(limits, time.monotonic() + limits.deadline_s, client.bytes_read)
    report = IngestReport(stream=stream)
    with unit_of_work(engine) as session:
        cursor = state.get_cursor(session, stream)
        report.committed = state.committed_pages(session, stream)
    report.cursor = cursor
    retries_before = client.retries

    def fetch(after: str | None) -> _Fetched:
        return _fetch(
            client, stream, after, page_size, spent, clock=clock, max_skew=max_skew, years=years
        )

    # one thread fetches the next page, another archives the current one while it is stored
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"ingest-{stream}") as pool:
        pending: Future[_Fetched] | None = pool.submit(fetch, cursor)
        sink = _Sink(engine, policy, surges, archive, db_window, pool)
        try:
            while pending is not None:
                fetched = pending.result()
                page, pending = fetched.page, None
                _check_progress(report, cursor, page)
                idle = spent.count(report, page, valid=fetched.valid)
                next_cursor = page.next_cursor if page.next_cursor is not None else cursor
                more = page.has_more and (max_pages is None or report.pages + 1 < max_pages)
                stop = spent.refusal(report.pages + 1) if more else None
                if more and stop is None:
                    pending = pool.submit(fetch, next_cursor)
                stored = _take(sink, fetched, report, idle, next_cursor)
                report.seen_cursors.update([cursor] if cursor is not None else [])
                cursor = next_cursor
                _count(report, fetched, stored, metrics, retries=client.retries - retries_before)
                if on_page:
                    on_page(report)
                if stop:
                    raise LimitExceeded(f"{stop} with more to pull; stopped {_where(report)}")
        except TokenRefused as refused:
            report.error = str(refused)
            report.alerts += alert_token_refused(engine, stream, refused, now=clock())
        except UptimeApiError as exc:
            report.error = str(exc)
        finally:
            if pending is not None:
                pending.cancel()
    _finish(report, metrics, retries=client.retries - retries_before, now=clock())
    return report


def _fetch(
    client: UptimeClient,
    stream: str,
    after: str | None,
    page_size: int,
    spent: _Spent,
    *,
    clock: Callable[[], datetime],
    max_skew: timedelta,
    years: YearWindow,
) -> _Fetched:
    """The page after `after`, validated, within what is left of the run's limits."""
    page = client.fetch_page(
        stream,
        after,
        page_size,
        deadline=spent.deadline,
        max_bytes=spent.limits.max_bytes - (client.bytes_read - spent.bytes_before),
    )
    now = clock()
    if stream == "heartbeats":
        frame, rejected = validate_heartbeats(page.records, now=now, max_skew=max_skew, years=years)
        return _Fetched(page, frame, [], rejected, now)
    devices, rejected = validate_devices(page.records, years=years)
    return _Fetched(page, None, devices, rejected, now)


def _finish(report: IngestReport, metrics: IngestMetrics, *, retries: int, now: datetime) -> None:
    """Count the retries no page took (the failing one's) and update the lag as of `now`."""
    metrics.retries.labels(report.stream).inc(retries - report.retries)
    report.retries = retries
    if report.stream == "heartbeats":
        metrics.observed(None, now=now)  # the lag grows while nothing new comes


def _count(
    report: IngestReport,
    fetched: _Fetched,
    stored: StoredBatch,
    metrics: IngestMetrics,
    *,
    retries: int,
) -> None:
    """Count a page in the run's report and in the process's metrics."""
    metrics.page(
        report.stream,
        pulled=len(fetched.page.records),
        stored=stored.stored,
        conflicting=stored.conflicting,
        reasons=[r.reason for r in fetched.rejected],
        retries=retries - report.retries,
    )
    frame = fetched.heartbeats
    if frame is not None:
        newest = frame.get_column("observed_at").max() if frame.height else None
        metrics.observed(newest, now=fetched.now)  # type: ignore[arg-type]
    report.pages += 1
    report.pulled += len(fetched.page.records)
    report.stored += stored.stored
    report.quarantined += len(fetched.rejected)
    report.retries = retries
    report.caught_up = not fetched.page.has_more


def _where(report: IngestReport) -> str:
    return f"after {report.pages} pages, the cursor at {report.cursor!r}"


@dataclass(frozen=True)
class _Sink:
    """Where and how a run stores its pages."""

    engine: Engine
    policy: SeasonPolicy
    surges: SurgePolicy | None
    archive: HeartbeatArchive | None
    db_window: timedelta | None
    pool: ThreadPoolExecutor | None  # runs the archive write beside the transaction


def _take(
    sink: _Sink, fetched: _Fetched, report: IngestReport, idle: bool, cursor: str | None
) -> StoredBatch:
    """Store a page with the `cursor` after it and move the report's cursor there, then
    watch its device records for a surge of metadata writes. A page without progress is
    stored only for the records it brought to quarantine (those are kept, idle or not).
    The page's archive write runs on `pool` while its database transaction does, and the
    transaction commits only once the write has (DESIGN 8: archived before committed)."""
    stored = StoredBatch(0, 0)
    if fetched.page.records or not idle:
        page = report.committed + 1
        archived: Future[int] | None = None
        archive, pool = sink.archive, sink.pool
        if archive is not None and fetched.heartbeats is not None:
            put = partial(archive.put_page, fetched.heartbeats, stream=report.stream, page=page)
            archived = pool.submit(put) if pool is not None else None
            if archived is None:
                put()
        try:
            stored = _store(
                sink.engine,
                report.stream,
                fetched,
                sink.policy,
                cursor=cursor,
                db_window=sink.db_window,
                before_commit=archived.result if archived is not None else None,
            )
        finally:
            if archived is not None:
                wait([archived])  # never leave a write running behind a failed page
        report.cursor, report.committed = cursor, page
    if sink.surges is not None and fetched.devices:
        report.alerts += watch_metadata_writes(
            sink.engine, fetched.devices, sink.surges, now=fetched.now
        )
    return stored


def _store(
    engine: Engine,
    stream: str,
    fetched: _Fetched,
    policy: SeasonPolicy,
    *,
    cursor: str | None,
    db_window: timedelta | None = None,
    before_commit: Callable[[], object] | None = None,
) -> StoredBatch:
    """One page's data, its quarantined records and the cursor after it: one transaction,
    which commits after `before_commit` returns (and not at all if it raises)."""
    with unit_of_work(engine) as session:
        if fetched.heartbeats is not None:
            stored = store_heartbeats(
                session.connection(),
                fetched.heartbeats,
                policy,
                received_at_us=to_us(fetched.now),
                kept_from_us=KEEP_ALL if db_window is None else to_us(fetched.now - db_window),
            )
        else:
            devices = store_devices(
                session,
                fetched.devices,
                now=fetched.now,
                actor=FEED_ACTOR,
                source=fetched.page.source,
            )
            stored = StoredBatch(devices, 0)
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
        if before_commit is not None:
            before_commit()
    return stored


FEED_ACTOR = "uptime-api"  # who wrote a registry record that does not say
AUTH_REFUSED = "uptime-auth-refused"  # the alert kind: the service token is wrong or revoked


def alert_token_refused(
    engine: Engine, stream: str, refused: TokenRefused, *, now: datetime
) -> int:
    """Raise an `uptime-auth-refused` alert for `stream`, unless one is open already (the
    scheduler retries every minute; one alert is enough for a person to act on). Returns
    how many alerts were raised."""
    log.error("%s pull stopped: %s", stream, refused)
    route = f"uptime {stream}"
    open_alerts = list_alerts(engine, "open", 1_000, actor=FEED_ACTOR)
    if any(a.kind == AUTH_REFUSED and a.route == route for a in open_alerts):
        return 0
    raise_alert(
        engine,
        kind=AUTH_REFUSED,
        route=route,
        actor=FEED_ACTOR,
        writes=0,
        threshold=0.0,
        block=False,  # nothing of ours to block: the token must be fixed or renewed
        now=now,
        raised_by="ingest",
    )
    return 1


def watch_metadata_writes(
    engine: Engine, records: list[dict[str, Any]], policy: SurgePolicy, *, now: datetime
) -> int:
    """Raise a `metadata-surge` alert for each actor and minute where the stored writes of
    the 60 seconds up to one of `records` reach the surge threshold against that actor's
    previous minutes (a sliding window: a burst straddling a minute's edge is one burst);
    once each. Returns how many alerts were raised."""
    seconds: dict[str, set[int]] = {}
    for record in records:
        actor = record.get("updated_by") or FEED_ACTOR
        seconds.setdefault(actor, set()).add(int(record["updated_at"].timestamp()))
    raised = 0
    for actor, touched in sorted(seconds.items()):
        since = datetime.fromtimestamp(min(touched) - 60 * (policy.baseline_minutes + 1), UTC)
        until = datetime.fromtimestamp(max(touched) + 1, UTC)
        with unit_of_work(engine) as session:
            counts = writes_per_second(session, actor, since, until)
        for second, writes, threshold in surge_windows(counts, touched, policy):
            minute = second // 60
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
                "metadata surge: %s wrote %d device records in the 60 s to %s (threshold %.1f)",
                actor, writes, datetime.fromtimestamp(second, UTC).isoformat(), threshold,
            )  # fmt: skip
            raised += 1
    return raised
