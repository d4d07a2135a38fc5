"""Ingestion's Prometheus metrics move with a real pull and are served on /metrics
(issue 12 item 19)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from rewards.api.app import create_app
from rewards.services.ingest import pull_stream
from rewards.services.ingest_metrics import INGEST_METRICS, IngestMetrics
from rewards.settings import get_settings
from rewards.sim.fleet import FleetSpec, delivered_heartbeats
from rewards.sim.server import BackgroundServer, Faults, UptimeSimulator, create_sim_app
from rewards.uptime.client import RetryPolicy, UptimeClient
from rewards.uptime.records import validate_heartbeats
from tests.builders import policy

P = policy()
NOW = datetime(2024, 5, 1, tzinfo=UTC)
GOOD = {
    "device_id": "gpu-1",
    "observed_at": "2024-04-25T08:00:00Z",
    "boot_id": "b",
    "agent_version": "0.9.9",
}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def quarantined_heartbeats(registry: CollectorRegistry) -> dict[str, float]:
    """The heartbeat stream's quarantine counts by reason. Keyed by reason alone, the
    devices stream's samples (earlier tests in the process quarantine look-alike devices
    as bad_identifier too) would overwrite the heartbeats' under the same key."""
    return {
        s.labels["reason"]: s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "rewards_ingest_records_quarantined_total"
        and s.labels["stream"] == "heartbeats"
    }


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
    quarantined_before = quarantined_heartbeats(registry)
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
    quarantined = quarantined_heartbeats(registry)
    moved_by_reason = {r: n - quarantined_before.get(r, 0.0) for r, n in quarantined.items()}
    assert sum(moved_by_reason.values()) == report.quarantined
    assert "other" not in quarantined  # every reason the simulator produces has its code
    newest = delivered_heartbeats(sim.heartbeats).get_column("observed_at").max()
    newest = max(newest, newest_before or newest)  # type: ignore[type-var]
    lag = sample(registry, "rewards_ingest_heartbeat_lag_seconds")
    assert lag == (NOW - newest).total_seconds()  # type: ignore[operator]

    app = create_app(engine, get_settings(), None)
    with BackgroundServer(app) as api:
        text = httpx.get(api.url + "/metrics").text
    # parsed, not matched as text: past a million the exposition format writes 1.58e+06
    served = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert served[("rewards_ingest_heartbeat_lag_seconds", ())] == lag
    pulled = sample(registry, "rewards_ingest_records_pulled_total", stream="heartbeats")
    assert served[("rewards_ingest_records_pulled_total", (("stream", "heartbeats"),))] == pulled
    assert "rewards_api_requests_total" in text  # the API's own metrics are still there


def test_a_quarantine_reason_is_counted_by_its_code_not_by_words_in_its_values() -> None:
    # the reason text names the record's values: a bad time spelled "identifier" is still
    # a bad_timestamp, and a device_id spelled like a time is still a bad_identifier
    records = [
        {**GOOD, "observed_at": "identifier"},
        {**GOOD, "observed_at": "bad identifier_at'"},
        {**GOOD, "device_id": "2024-04-25T08:00:00Z 'observed_at' identifier"},
        {**GOOD, "boot_id": "not a JSON object, 'observed_at'", "agent_version": ""},
    ]
    _, rejected = validate_heartbeats(records, now=NOW, max_skew=timedelta(0))
    metrics = IngestMetrics(CollectorRegistry())
    metrics.page(
        "heartbeats",
        pulled=len(records),
        stored=0,
        conflicting=0,
        reasons=[r.reason for r in rejected],
        retries=0,
    )
    counted = {
        s.labels["reason"]: s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "rewards_ingest_records_quarantined_total"
    }
    assert counted == {"bad_timestamp": 2, "bad_identifier": 1, "empty_field": 1}


def test_a_reason_without_a_known_code_is_counted_as_other_so_labels_stay_few() -> None:
    metrics = IngestMetrics(CollectorRegistry())
    reasons = ["made_up_code: x", "bad_identifier without a colon", "", "bad_timestamp: y"]
    metrics.page("devices", pulled=4, stored=0, conflicting=0, reasons=reasons, retries=0)
    counted = {
        s.labels["reason"]: s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "rewards_ingest_records_quarantined_total"
    }
    assert counted == {"other": 3, "bad_timestamp": 1}
