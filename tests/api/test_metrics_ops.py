"""`/metrics` says what operators watch (issue 17, item 9): devices online, ingest lag,
the published snapshot's age, job runs and their latest outcome and duration, request
latency; and every metric the shipped Grafana dashboard and Prometheus alert rules use is
one the engine exports. Real HTTP on the seeded fleet, after a real snapshot run."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine, text

from rewards.api.app import create_app
from rewards.api.verifier import make_verifier
from rewards.settings import REPO_ROOT, get_settings
from rewards.sim.server import BackgroundServer
from tests.seeded import POLICY
from tests.web.conftest import prepared

OPS = REPO_ROOT / "ops"
SUFFIXES = re.compile(r"_(total|bucket|count|sum|created)$")


def _used() -> set[str]:
    rules = (OPS / "prometheus" / "alerts.yml").read_text()
    dashboard = json.loads((OPS / "grafana" / "rewards-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    names = re.findall(r"\brewards_[a-z_]+", rules + "\n".join(exprs))
    return {SUFFIXES.sub("", n) for n in names}


def _samples(body: str) -> dict[str, float]:
    found = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_every_metric_the_dashboard_and_alerts_use_is_exported_with_fleet_values(
    ingested: Engine,
) -> None:
    prepared(ingested)  # a snapshot run and published, a view built: jobs on record
    settings = get_settings(dev_issuer_enabled=False, season=POLICY.season_id)
    with (
        BackgroundServer(create_app(ingested, settings, make_verifier(settings))) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        assert client.get("/healthz").status_code == 200  # a request to time
        body = client.get("/metrics").text
    exported = {SUFFIXES.sub("", m) for m in re.findall(r"^# TYPE (rewards_[a-z_]+)", body, re.M)}
    assert _used() and _used() <= exported, _used() - exported
    samples = _samples(body)
    with ingested.connect() as connection:
        newest = connection.execute(text('SELECT max("end") FROM open_intervals')).scalar_one()
        online = connection.execute(
            text('SELECT count(*) FROM open_intervals WHERE "end" >= :t'),
            {"t": newest - POLICY.liveness_timeout_us},
        ).scalar_one()
        runs = connection.execute(
            text("SELECT count(*) FROM job_runs WHERE job_id = :j AND status = 'succeeded'"),
            {"j": f"snapshot:{POLICY.season_id}"},
        ).scalar_one()
    assert samples["rewards_fleet_online_devices"] == online > 0
    lag = samples["rewards_fleet_newest_heartbeat_age_seconds"]
    newest_at = datetime.fromtimestamp(newest / 1e6, UTC)
    assert lag == pytest.approx((datetime.now(UTC) - newest_at).total_seconds(), abs=60)
    assert samples["rewards_snapshot_published_age_seconds"] >= 0
    job = f'rewards_job_runs{{job="snapshot:{POLICY.season_id}",status="succeeded"}}'
    assert samples[job] == runs >= 1
    assert f'rewards_job_last_failed{{job="snapshot:{POLICY.season_id}"}}' in samples
    assert samples['rewards_api_request_seconds_count{route="/healthz"}'] >= 1
