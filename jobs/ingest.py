"""The ingestion jobs: pull devices and heartbeats from the uptime API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from rewards.core import SeasonPolicy
from rewards.services.archive import archive_upkeep, open_archive
from rewards.services.incidents import detect
from rewards.services.ingest import IngestReport, pull_stream
from rewards.services.intervals import apply_retention
from rewards.services.runs import RunContext
from rewards.settings import Settings
from rewards.uptime.client import UptimeClient

JOB_IDS = {"devices": "ingest-devices", "heartbeats": "ingest-heartbeats"}


RETENTION_JOB_ID = "prune-heartbeats"


def retention_job(
    engine: Engine, settings: Settings, *, clock: Callable[[], datetime]
) -> Callable[[RunContext], None]:
    """The body of the retention job: drop the database's raw heartbeats older than
    heartbeat_db_window_s (the archive keeps them for heartbeat_retention_days)."""

    def body(context: RunContext) -> None:
        context.deleted = apply_retention(engine, now=clock(), keep=settings.heartbeat_db_window)

    return body


ARCHIVE_JOB_ID = "archive-upkeep"


def archive_job(
    settings: Settings, *, clock: Callable[[], datetime]
) -> Callable[[RunContext], None]:
    """The body of the archive upkeep job: compact the heartbeat archive's small files,
    sort settled days by device, drop days past heartbeat_retention_days, vacuum what no
    recent version needs."""

    def body(context: RunContext) -> None:
        done = archive_upkeep(
            open_archive(settings.archive_url),
            now=clock(),
            keep=timedelta(days=settings.heartbeat_retention_days),
            vacuum=timedelta(hours=settings.archive_vacuum_hours),
        )
        context.deleted = done.files_vacuumed

    return body


OUTAGES_JOB_ID = "detect-outages"


def outages_job(
    engine: Engine, settings: Settings, policy: SeasonPolicy, *, clock: Callable[[], datetime]
) -> Callable[[RunContext], None]:
    """The body of the outage detector job: store proposed incidents for an admin."""

    def body(context: RunContext) -> None:
        context.stored = len(detect(engine, policy, now=clock(), settings=settings.detector))

    return body


def make_client(settings: Settings) -> UptimeClient:
    """An uptime API client configured from settings."""
    return UptimeClient(
        settings.uptime_api_url,
        settings.uptime_api_token.get_secret_value(),
        timeout_s=settings.uptime_api_timeout_s,
        max_page_bytes=settings.max_page_bytes,
        page_timeout_s=settings.ingest_page_timeout_s,
        retry=settings.retry,
    )


def pull_job(
    engine: Engine,
    settings: Settings,
    policy: SeasonPolicy,
    stream: str,
    *,
    clock: Callable[[], datetime],
    on_page: Callable[[IngestReport], None] | None = None,
    max_pages: int | None = None,
) -> Callable[[RunContext], None]:
    """The body of the ingest job for `stream`, for jobs.runner / services.runs; with
    `max_pages`, a bounded run that stops after that many pages (operators, benchmarks)."""

    def body(context: RunContext) -> None:
        def page_done(report: IngestReport) -> None:
            context.pages, context.pulled = report.pages, report.pulled
            context.stored, context.quarantined = report.stored, report.quarantined
            context.renew()
            if on_page:
                on_page(report)

        with make_client(settings) as client:
            report = pull_stream(
                engine=engine,
                client=client,
                stream=stream,
                policy=policy,
                page_size=settings.page_size,
                max_skew=timedelta(seconds=settings.max_clock_skew_s),
                clock=clock,
                on_page=page_done,
                surges=settings.surges,
                years=settings.timestamp_years,
                limits=settings.ingest_limits,
                max_pages=max_pages,
                archive=open_archive(settings.archive_url) if stream == "heartbeats" else None,
                db_window=settings.heartbeat_db_window,
            )
        context.error = report.error

    return body
