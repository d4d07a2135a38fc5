"""Pulling from the uptime API into the database: exact, idempotent, never half-committed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from starlette.requests import Request
from starlette.responses import Response

from rewards.core import online_intervals
from rewards.db import state
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import load_heartbeats
from rewards.db.interval_reads import load_intervals
from rewards.services.alerts import list_alerts
from rewards.services.ingest import IngestReport, pull_stream
from rewards.sim.fleet import FleetSpec, delivered_heartbeats
from rewards.sim.server import BackgroundServer, Faults, UptimeSimulator, create_sim_app
from rewards.uptime.client import RetryPolicy, UptimeClient
from tests.builders import policy
from tests.uptime.hostile import heartbeat, hostile_app, json_response, page

P = policy()
NOW = datetime(2024, 5, 1, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=8, backoff_base_s=0.001, backoff_max_s=0.005)


def pull(
    engine,
    url: str,
    *,
    stream: str = "heartbeats",
    page_size: int = 5_000,  # type: ignore[no-untyped-def]
    retry: RetryPolicy = FAST,
    max_pages: int | None = None,
) -> IngestReport:
    with UptimeClient(url, "secret", retry=retry) as client:
        return pull_stream(
            engine=engine,
            client=client,
            stream=stream,
            policy=P,
            page_size=page_size,
            max_skew=timedelta(minutes=5),
            clock=lambda: NOW,
            max_pages=max_pages,
        )


def stored(engine):  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as session:
        return load_heartbeats(session.connection()), load_intervals(session.connection())


def test_a_faulty_at_least_once_api_is_stored_exactly(engine) -> None:  # type: ignore[no-untyped-def]
    spec = FleetSpec(
        seed=5,
        devices=40,
        days=3,
        duplicate_rate=0.05,
        conflict_rate=0.01,
        late_rate=0.02,
        bad_record_rate=0.001,
    )
    sim = UptimeSimulator(
        spec,
        token="secret",
        faults=Faults(
            error_rate=0.1, throttle_rate=0.05, retry_after_s=0, truncate_rate=0.05, seed=3
        ),
    )
    with BackgroundServer(create_sim_app(sim)) as server:
        report = pull(engine, server.url)
        assert report.caught_up and report.error is None and report.retries > 0
        again = pull(engine, server.url)  # caught up: nothing new, nothing doubled
    truth = delivered_heartbeats(sim.heartbeats)
    heartbeats, intervals = stored(engine)
    assert heartbeats.equals(truth)
    assert intervals.equals(online_intervals(truth, P))
    bad = sim.heartbeats.get_column("raw").is_not_null().sum()
    assert report.quarantined == bad > 0
    assert again.pulled == 0 and again.stored == 0
    with unit_of_work(engine) as session:
        assert len(state.quarantined(session, "heartbeats")) == bad


def test_devices_stream_builds_the_registry_history(engine) -> None:  # type: ignore[no-untyped-def]
    sim = UptimeSimulator(FleetSpec(seed=2, devices=50, days=7), token="secret")
    with BackgroundServer(create_sim_app(sim)) as server:
        report = pull(engine, server.url, stream="devices", page_size=20)
    assert report.caught_up and report.pages == -(-sim.devices.height // 20)
    distinct = sim.devices.unique(["device_id", "updated_us"]).height
    with unit_of_work(engine) as session:
        versions = (
            session.connection()
            .exec_driver_sql("SELECT count(*) FROM device_metadata")
            .scalar_one()
        )
        open_versions = (
            session.connection()
            .exec_driver_sql("SELECT count(*) FROM device_metadata WHERE valid_to IS NULL")
            .scalar_one()
        )
    assert open_versions == 50
    assert versions <= distinct  # unchanged redeliveries add no version


def serve_pages(pages: dict[str, str]):  # type: ignore[no-untyped-def]
    def handler(request: Request, _: int) -> Response:
        body = pages.get(request.query_params.get("cursor", ""))
        return json_response(body) if body else json_response("{}", 500)

    return hostile_app(handler)[0]


@pytest.mark.parametrize(
    ("third", "problem"),
    [
        (page(heartbeat("gpu-3"), next_cursor="20", has_more=True), "repeated cursor"),
        (page(heartbeat("gpu-3"), next_cursor="10", has_more=True), "repeated cursor"),
        (page(heartbeat("gpu-3"), next_cursor="5", has_more=True), "went backwards"),
    ],
)
def test_a_cursor_that_repeats_or_goes_backwards_ends_the_run_keeping_good_pages(  # type: ignore[no-untyped-def]
    engine, third: str, problem: str
) -> None:
    app = serve_pages(
        {
            "": page(heartbeat("gpu-1"), next_cursor="10", has_more=True),
            "10": page(heartbeat("gpu-2"), next_cursor="20", has_more=True),
            "20": third,
        }
    )
    with BackgroundServer(app) as server:
        report = pull(engine, server.url)
    assert report.error and problem in report.error and report.pages == 2
    heartbeats, _ = stored(engine)
    assert heartbeats.get_column("device_id").to_list() == ["gpu-1", "gpu-2"]
    with unit_of_work(engine) as session:
        assert state.get_cursor(session, "heartbeats") == "20"


def test_a_page_failing_after_retries_keeps_the_cursor_and_a_rerun_resumes(engine) -> None:  # type: ignore[no-untyped-def]
    pages = {"": page(heartbeat("gpu-1"), next_cursor="10", has_more=True)}
    app = serve_pages(pages)
    with BackgroundServer(app) as server:
        first = pull(engine, server.url, retry=RetryPolicy(max_attempts=2, backoff_base_s=0))
        assert first.error and "after 2 attempts" in first.error and first.pages == 1
        pages["10"] = page(heartbeat("gpu-2"), next_cursor="20", has_more=False)
        second = pull(engine, server.url)
    assert second.caught_up and second.pages == 1
    heartbeats, _ = stored(engine)
    assert heartbeats.get_column("device_id").to_list() == ["gpu-1", "gpu-2"]


def device_record(device_id: str, owner_id: str = "owner-1", **extra: object) -> str:
    record = {
        "device_id": device_id,
        "owner_id": owner_id,
        "gpu_model": "A100",
        "gpu_count": 1,
        "registered_at": "2024-04-01T00:00:00Z",
        "updated_at": "2024-04-01T00:00:00Z",
        "status": "active",
        **extra,
    }
    return json.dumps(record)


def test_look_alike_identifiers_are_quarantined_not_stored_as_separate_devices_or_suppliers(  # type: ignore[no-untyped-def]
    engine,
) -> None:
    look_alikes = [
        device_record(" gpu-1"),  # padded
        device_record("gpu\u200d-1"),  # zero-width joiner
        device_record("gpu-1\u202e"),  # right-to-left override
        device_record("gpu-\u0430"),  # Cyrillic a
        device_record("gpu-2", owner_id="owner-\u00e9"),  # other non-ASCII owner
        device_record("gpu-3", owner_id="o" * 129),  # too long
        device_record("gpu-4", updated_by="ops team"),  # an actor with a space
    ]
    body = json.dumps(
        {
            "devices": [
                json.loads(r)
                for r in [device_record("gpu-1"), device_record("GPU-1"), *look_alikes]
            ],
            "next_cursor": "1",
            "has_more": False,
        }
    )
    beats = page(
        heartbeat("gpu-1"),
        heartbeat("gpu\u200d-1"),
        heartbeat("gpu-\u0430"),
        next_cursor="1",
    )
    app = serve_pages({"": body})
    with BackgroundServer(app) as server:
        report = pull(engine, server.url, stream="devices")
    with BackgroundServer(serve_pages({"": beats})) as server:
        pull(engine, server.url)
    assert report.stored == 2 and report.quarantined == len(look_alikes)
    with unit_of_work(engine) as session:
        ids = session.connection().exec_driver_sql(
            "SELECT device_id, owner_id FROM device_metadata ORDER BY device_id"
        )
        assert [tuple(r) for r in ids] == [("GPU-1", "owner-1"), ("gpu-1", "owner-1")]
        devices = state.quarantined(session, "devices")
        heartbeats = state.quarantined(session, "heartbeats")
    assert [r.reason.split(":")[0] for r in devices + heartbeats] == ["bad_identifier"] * 9
    assert [r.reason.split(" ")[2] for r in devices] == ["'device_id'"] * 4 + [
        "'owner_id'",
        "'owner_id'",
        "'updated_by'",
    ]
    assert stored(engine)[0].get_column("device_id").to_list() == ["gpu-1"]


def test_leap_seconds_and_years_outside_the_window_are_quarantined_as_bad_timestamp(  # type: ignore[no-untyped-def]
    engine,
) -> None:
    beats = page(
        heartbeat("gpu-1", "2016-12-31T23:59:60Z"),
        heartbeat("gpu-1", "0000-01-01T00:00:00Z"),
        heartbeat("gpu-1", "2024-04-25T08:00:00Z"),
        next_cursor="1",
    )
    with BackgroundServer(serve_pages({"": beats})) as server:
        report = pull(engine, server.url)
    assert report.stored == 1 and report.quarantined == 2
    heartbeats, _ = stored(engine)
    assert heartbeats.get_column("observed_at").to_list() == [datetime(2024, 4, 25, 8, tzinfo=UTC)]
    with unit_of_work(engine) as session:
        reasons = [r.reason for r in state.quarantined(session, "heartbeats")]
    assert [r.split(":")[0] for r in reasons] == ["bad_timestamp"] * 2
    assert "leap second" in reasons[0] and "year 0 is outside 2000..2100" in reasons[1]


def test_a_record_naming_a_key_twice_is_quarantined_with_its_reason_not_stored(engine) -> None:  # type: ignore[no-untyped-def]
    twice = heartbeat("gpu-1").replace('"boot_id"', '"device_id":"gpu-evil","boot_id"')
    app = serve_pages({"": page(twice, heartbeat("gpu-2"), next_cursor="10")})
    with BackgroundServer(app) as server:
        report = pull(engine, server.url)
    assert report.error is None and report.stored == 1 and report.quarantined == 1
    heartbeats, _ = stored(engine)
    assert heartbeats.get_column("device_id").to_list() == ["gpu-2"]
    with unit_of_work(engine) as session:
        (held,) = state.quarantined(session, "heartbeats")
    assert held.reason == "duplicate_key: duplicate key 'device_id' in the record"
    assert "gpu-evil" in held.raw and "gpu-1" in held.raw


def test_a_page_nested_too_deeply_ends_the_run_with_its_reason_keeping_the_cursor(engine) -> None:  # type: ignore[no-untyped-def]
    deep = '{"heartbeats":[' + "[" * 50_000 + "]" * 50_000 + '],"has_more":false}'
    app = serve_pages({"": page(heartbeat("gpu-1"), next_cursor="10", has_more=True), "10": deep})
    with BackgroundServer(app) as server:
        report = pull(engine, server.url)
    assert report.error and "nested deeper" in report.error and report.pages == 1
    with unit_of_work(engine) as session:
        assert state.get_cursor(session, "heartbeats") == "10"


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_service_token_raises_one_alert_and_stops_the_run_without_retrying(  # type: ignore[no-untyped-def]
    engine, status: int
) -> None:
    app, seen = hostile_app(lambda r, n: json_response('{"error":"revoked"}', status))
    with BackgroundServer(app) as server:
        first = pull(engine, server.url)
        again = pull(engine, server.url)
    assert len(seen) == 2  # one request per run: never retried
    for report in (first, again):
        assert report.error and f"HTTP {status}" in report.error and report.pages == 0
        assert "REWARDS_UPTIME_API_TOKEN" in report.error
    alerts = list_alerts(engine, "open")
    assert [(a.kind, a.route) for a in alerts] == [("uptime-auth-refused", "uptime heartbeats")]
    assert alerts[0].blocked is False  # an alert for a person to act on, not a block
