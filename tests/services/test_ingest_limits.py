"""Every ingest run has a deadline and budgets of pages and bytes; pages without progress
count against them; a run past one fails with its reason, the cursor at the last committed
page; and the job's lock holds while a slow page is in flight (issue 12 item 16)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response

from jobs.ingest import JOB_IDS, pull_job
from jobs.runner import run_recorded
from rewards.db import state
from rewards.db.engine import unit_of_work
from rewards.services.ingest import IngestLimits, IngestReport, pull_stream
from rewards.services.runs import JobBusy, exclusive_run
from rewards.settings import get_settings
from rewards.sim.server import BackgroundServer
from rewards.uptime.client import RetryPolicy, UptimeClient
from tests.builders import policy
from tests.uptime.hostile import heartbeat, hostile_app, json_response, page, slow

P = policy()
NOW = datetime(2024, 5, 1, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=2, backoff_base_s=0.001, backoff_max_s=0.005)


def data_page(n: int) -> str:
    """Page n of an endless stream: one new heartbeat, a fresh cursor, always more."""
    at = f"2024-04-25T{n // 60 % 24:02d}:{n % 60:02d}:00Z"
    return page(heartbeat(f"gpu-{n}", at), next_cursor=str(n), has_more=True)


def pull(engine: Engine, url: str, limits: IngestLimits, **client: float) -> IngestReport:
    with UptimeClient(url, "secret", retry=FAST, **client) as uptime:  # type: ignore[arg-type]
        return pull_stream(
            engine=engine,
            client=uptime,
            stream="heartbeats",
            policy=P,
            page_size=100,
            max_skew=timedelta(minutes=5),
            clock=lambda: NOW,
            limits=limits,
        )


def cursor_of(engine: Engine) -> str | None:
    with unit_of_work(engine) as session:
        return state.get_cursor(session, "heartbeats")


def test_endless_empty_pages_fail_the_recorded_run_with_the_cursor_at_the_last_data_page(
    engine: Engine,
) -> None:
    def endless(request: Request, n: int) -> Response:
        if n == 1:
            return json_response(data_page(1))
        # fresh cursors, no records, always "more"; ends only so old code cannot hang
        return json_response(page(next_cursor=str(n), has_more=n < 300))

    app, seen = hostile_app(endless)
    with BackgroundServer(app) as server:
        settings = get_settings(
            uptime_api_url=server.url,
            uptime_api_token="secret",
            ingest_max_idle_in_a_row=5,
            backoff_base_s=0.001,
        )
        body = pull_job(engine, settings, P, "heartbeats", clock=lambda: NOW)
        context = run_recorded(
            engine, JOB_IDS["heartbeats"], body, trigger="test", lock_ttl=timedelta(minutes=1)
        )
    assert context is not None and context.error
    assert "6 pages in a row brought no valid records" in context.error
    assert "ingest_max_idle_in_a_row=5" in context.error
    assert len(seen) == 7
    assert cursor_of(engine) == "1"
    with unit_of_work(engine) as session:
        (run,) = state.job_runs(session, job_id=JOB_IDS["heartbeats"])
    assert run.status == "failed" and run.error == context.error


def test_idle_pages_count_against_a_budget_of_their_own_even_when_not_in_a_row(
    engine: Engine,
) -> None:
    # every other page is empty: never 2 in a row, but 4 in all is over a budget of 3
    app, _ = hostile_app(
        lambda r, n: json_response(
            data_page(n) if n % 2 else page(next_cursor=str(n), has_more=n < 100)
        )
    )
    with BackgroundServer(app) as server:
        report = pull(engine, server.url, IngestLimits(max_idle_pages=3, max_idle_in_a_row=2))
    assert report.error and "ingest_max_idle_pages=3" in report.error
    assert report.pages == 7 and cursor_of(engine) == "7"


def test_a_run_past_its_page_budget_fails_after_committing_the_last_page_it_may_read(
    engine: Engine,
) -> None:
    app, seen = hostile_app(lambda r, n: json_response(data_page(n)))
    with BackgroundServer(app) as server:
        report = pull(engine, server.url, IngestLimits(max_pages=3))
    assert report.error and "ingest_max_pages=3" in report.error
    assert report.pages == report.stored == 3 and len(seen) == 3
    assert cursor_of(engine) == "3" and "the cursor at '3'" in report.error


def test_a_run_past_its_byte_budget_fails_with_the_cursor_at_the_last_committed_page(
    engine: Engine,
) -> None:
    size = len(data_page(1).encode())
    app, _ = hostile_app(lambda r, n: json_response(data_page(n)))
    with BackgroundServer(app) as server:
        report = pull(engine, server.url, IngestLimits(max_bytes=size * 4 + size // 2))
    assert report.error and "byte budget (ingest_max_bytes)" in report.error
    assert report.pages == report.stored == 4
    assert cursor_of(engine) == "4"


def test_a_run_past_its_deadline_fails_with_the_cursor_at_the_last_committed_page(
    engine: Engine,
) -> None:
    app, _ = hostile_app(lambda r, n: slow(data_page(n), 0.3))
    started = time.monotonic()
    with BackgroundServer(app) as server:
        report = pull(engine, server.url, IngestLimits(deadline_s=1.0))
    assert time.monotonic() - started < 3
    assert report.error and "deadline" in report.error
    assert 1 <= report.pages <= 4 and report.stored == report.pages
    assert cursor_of(engine) == str(report.pages)


def test_a_slow_page_never_lets_a_second_runner_take_the_job(engine: Engine) -> None:
    # the lease lasts 2 s and is renewed every third of it; the page takes 5 s. (With a
    # 1 s lease a loaded 2-core machine starved the renewing thread past the lease once.)
    app, _ = hostile_app(lambda r, n: slow(page(heartbeat(), next_cursor="1"), 5.0))
    outcome: dict[str, object] = {}

    def first() -> None:
        with (
            BackgroundServer(app) as server,
            exclusive_run(
                engine,
                job_id="ingest-heartbeats",
                trigger="test",
                clock=lambda: datetime.now(UTC),
                ttl=timedelta(seconds=2),
            ),
        ):
            outcome["report"] = pull(engine, server.url, IngestLimits())

    runner = threading.Thread(target=first)
    runner.start()
    time.sleep(3.5)  # the page is still in flight, and the first ttl long past
    with (
        pytest.raises(JobBusy, match="already running"),
        exclusive_run(
            engine,
            job_id="ingest-heartbeats",
            trigger="test",
            clock=lambda: datetime.now(UTC),
            ttl=timedelta(seconds=2),
        ),
    ):
        pass
    runner.join()
    report = outcome["report"]
    assert isinstance(report, IngestReport) and report.error is None and report.stored == 1


def look_alike_page(n: int) -> str:
    """Page n of a hostile stream: look-alike device IDs only (each quarantined), a fresh
    cursor, always "more"; it ends at page 300 only so that old code cannot hang."""
    fakes = (f"gpu-{n}\u200d", f"gpu-\u0430{n}", f" gpu-{n}")
    return page(*(heartbeat(d) for d in fakes), next_cursor=str(n), has_more=n < 300)


def test_endless_pages_of_only_quarantined_records_count_as_no_progress_yet_are_kept(
    engine: Engine,
) -> None:
    app, seen = hostile_app(
        lambda r, n: json_response(data_page(1) if n == 1 else look_alike_page(n))
    )
    with BackgroundServer(app) as server:
        report = pull(engine, server.url, IngestLimits(max_idle_in_a_row=5))
    assert report.error and "6 pages in a row brought no valid records" in report.error
    assert "ingest_max_idle_in_a_row=5" in report.error
    assert len(seen) == 7 and report.pages == 6 and report.stored == 1
    # pages 2-6 were refused as progress, but their quarantined records and cursors were
    # committed: nothing a person must chase is lost; page 7 (over the budget) was not
    assert cursor_of(engine) == "6" and "the cursor at '6'" in report.error
    with unit_of_work(engine) as session:
        held = state.quarantined(session, "heartbeats")
    assert len(held) == report.quarantined == 5 * 3
    assert {h.reason.split(":")[0] for h in held} == {"bad_identifier"}


def test_quarantine_only_pages_count_against_the_run_budget_of_idle_pages(
    engine: Engine,
) -> None:
    # every other page has only look-alikes: never 2 in a row, but 4 in all is over 3
    app, _ = hostile_app(lambda r, n: json_response(data_page(n) if n % 2 else look_alike_page(n)))
    with BackgroundServer(app) as server:
        report = pull(engine, server.url, IngestLimits(max_idle_pages=3, max_idle_in_a_row=2))
    assert report.error and "ingest_max_idle_pages=3" in report.error
    assert report.pages == 7 and cursor_of(engine) == "7"
