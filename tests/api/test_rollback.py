"""Publishing an older snapshot over a newer published one through the API (DESIGN 9):
refused with a 409 of its own problem type (rollback-refused) unless the body overrides it
with a reason; an override is audited. Real HTTP on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from rewards.api.app import create_app
from rewards.api.problems import TYPES
from rewards.api.verifier import dev_issuer, make_verifier
from rewards.db.engine import make_engine
from rewards.services.publication import publish
from rewards.services.snapshot_runs import run_snapshot
from rewards.services.snapshots import resolve
from rewards.settings import Settings, get_settings
from rewards.sim.server import BackgroundServer
from tests.seeded import KEY, NOW, POLICY, ingested_copy

LOCK = timedelta(minutes=5)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_publishing_an_older_version_over_the_api_needs_override_and_reason(
    databases, seeded, dialect: str, small_fleet, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(ingested_copy(databases, seeded, dialect, small_fleet))
    for force in (False, True):
        run_snapshot(
            engine, POLICY, epochs=range(7), trigger="manual", triggered_by="t", reason="t",
            clock=lambda: NOW, key=KEY, lock_ttl=LOCK, force=force,
        )  # fmt: skip
    publish(engine, resolve(engine, "v2", "ignition-s2"), by="t", clock=lambda: NOW, lock_ttl=LOCK)
    settings: Settings = get_settings(
        dev_issuer_enabled=True, dev_issuer_key_file=tmp_path / "dev.pem", season="ignition-s2"
    )
    token = dev_issuer(settings).token(
        "admin.example.org", ["admin"], now=datetime.now(UTC), ttl=timedelta(minutes=10)
    )
    headers = {"Authorization": f"Bearer {token}"}
    with BackgroundServer(create_app(engine, settings, make_verifier(settings))) as server:
        url = f"{server.url}/v1/admin/snapshots/v1/publish"
        refused = httpx.post(url, headers=headers, timeout=60)
        assert refused.status_code == 409
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == TYPES["rollback-refused"].uri  # not a generic conflict
        assert "older than the published ignition-s2-v2" in refused.json()["detail"]
        no_reason = httpx.post(url, headers=headers, json={"override_rollback": True}, timeout=60)
        assert no_reason.status_code == 422
        assert resolve(engine, "v2", "ignition-s2").status == "published"
        done = httpx.post(
            url, headers=headers, json={"override_rollback": True, "reason": "v2 was wrong"},
            timeout=60,
        )  # fmt: skip
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "published"
    assert resolve(engine, "v2", "ignition-s2").status == "superseded"
    with engine.connect() as connection:
        action, actor, details = connection.execute(
            text("SELECT action, actor, details FROM audit_log ORDER BY id DESC LIMIT 1")
        ).one()
    engine.dispose()
    assert (action, actor) == ("snapshot.rollback", "admin.example.org")
    assert json.loads(details)["reason"] == "v2 was wrong"
