"""Ingestion's Prometheus metrics move with a real pull and are served on /metrics
(issue 12 item 19)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from rewards.api.app import create_app
from rewards.services.ingest import pull_stream
from rewards.services.ingest_metrics import INGEST_METRICS, reason_kind
from rewards.settings import get_settings
from rewards.sim.fleet import FleetSpec, delivered_heartbeats
from rewards.sim.server import BackgroundServer, Faults, UptimeSimulator, create_sim_app
from rewards.uptime.client import RetryPolicy, UptimeClient
from tests.builders import policy

P = policy()
NOW = datetime(2024, 5, 1, tzinfo=UTC)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_faulty_pull_moves_every_ingest_metric_and_metrics_serves_them(engine: Engine) -> None:
    spec = FleetSpec(
        seed=7,
        devices=30,
        days=2,
        heartbeat_period_s=600,
        duplicate_rate=0.05,
        conflict_rate=0.02,
        bad_record_rate=0.005,
    )
    sim = UptimeSimulator(
        spec, token="secret", faults=Faults(error_rate=0.15, retry_after_s=0, seed=4)
    )
    registry = INGEST_METRICS.registry  # the process's: what /metrics serves
    names = {
        "pulled": ("rewards_ingest_records_pulled_total", {"stream": "heartbeats"}),
        "stored": ("rewards_ingest_records_stored_total", {"stream": "heartbeats"}),
        "pages": ("rewards_ingest_pages_total", {"stream": "heartbeats"}),
        "retries": ("rewards_ingest_retries_total", {"stream": "heartbeats"}),
        "conflicting": ("rewards_ingest_heartbeats_conflicting_total", {}),
    }
    before = {key: sample(registry, name, **labels) for key, (name, labels) in names.items()}
    newest_before = INGEST_METRICS.newest  # the process's newest, from earlier pulls
    quarantined_before = sum(
        s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "rewards_ingest_records_quarantined_total"
    )
    with (
        BackgroundServer(create_sim_app(sim)) as server,
        UptimeClient(
            server.url, "secret", retry=RetryPolicy(max_attempts=10, backoff_base_s=0.001)
        ) as client,
    ):
        report = pull_stream(
            engine=engine,
            client=client,
            stream="heartbeats",
            policy=P,
            page_size=500,
            max_skew=timedelta(minutes=5),
            clock=lambda: NOW,
        )
    assert report.caught_up and report.retries > 0 and report.quarantined > 0
    moved = {
        key: sample(registry, name, **labels) - before[key] for key, (name, labels) in names.items()
    }
    assert moved["pulled"] == report.pulled
    assert moved["stored"] == report.stored
    assert moved["pages"] == report.pages
    assert moved["retries"] == report.retries
    assert moved["conflicting"] > 0
    quarantined = {
        s.labels["reason"]: s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "rewards_ingest_records_quarantined_total"
    }
    assert sum(quarantined.values()) - quarantined_before == report.quarantined
    assert "other" not in quarantined  # every reason the simulator produces has its kind
    newest = delivered_heartbeats(sim.heartbeats).get_column("observed_at").max()
    newest = max(newest, newest_before or newest)  # type: ignore[type-var]
    lag = sample(registry, "rewards_ingest_heartbeat_lag_seconds")
    assert lag == (NOW - newest).total_seconds()  # type: ignore[operator]

    app = create_app(engine, get_settings(), None)
    with BackgroundServer(app) as api:
        text = httpx.get(api.url + "/metrics").text
    assert f"rewards_ingest_heartbeat_lag_seconds {lag}" in text
    pulled = sample(registry, "rewards_ingest_records_pulled_total", stream="heartbeats")
    assert f'rewards_ingest_records_pulled_total{{stream="heartbeats"}} {pulled}' in text
    assert "rewards_api_requests_total" in text  # the API's own metrics are still there


def test_a_quarantine_reason_is_counted_by_its_kind_not_its_values() -> None:
    assert reason_kind("duplicate key 'device_id' in the record") == "duplicate-key"
    assert reason_kind("observed_at is 3600 s ahead of the engine clock") == "in-the-future"
    assert reason_kind("field 'boot_id' must be a string, got int") == "not-a-string"
    assert reason_kind("field 'observed_at' is not RFC 3339: '2024-13-01'") == "bad-time"
