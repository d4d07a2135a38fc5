"""A burst of writes raises an alert within the same minute: stored, audited, counted in
/metrics, POSTed to the webhook; the actor is blocked until another admin clears it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request

from rewards.api.app import create_app
from rewards.api.surges import Surge, WriteCounter
from rewards.api.verifier import dev_issuer, make_verifier
from rewards.core import SurgePolicy
from rewards.db import audit
from rewards.db.engine import make_engine, unit_of_work
from rewards.services.incidents import declare
from rewards.settings import get_settings
from rewards.sim.server import BackgroundServer


def test_a_write_burst_raises_an_alert_and_blocks_until_cleared(  # type: ignore[no-untyped-def]
    databases, dialect: str, tmp_path: Path
) -> None:
    engine = make_engine(databases.fresh(dialect))
    now = datetime.now(UTC)
    declare(
        engine,
        incident_id="inc-1",
        start=now - timedelta(hours=2),
        end=now - timedelta(hours=1),
        recovery_deadline=timedelta(hours=1),
        scope={"all": True},
        reason="t",
        by="t",
        now=now,
    )
    received: list[dict[str, Any]] = []
    hook = FastAPI()

    @hook.post("/alerts")
    async def collect(request: Request) -> dict[str, str]:
        received.append(await request.json())
        return {"ok": "yes"}

    with BackgroundServer(hook) as receiver:
        settings = get_settings(
            dev_issuer_enabled=True,
            dev_issuer_key_file=tmp_path / "dev.pem",
            surge_min_writes=5,
            alert_webhook_url=f"{receiver.url}/alerts",
        )
        issuer = dev_issuer(settings)
        mallory, alice = (
            issuer.token(s, ["admin"], now=now, ttl=timedelta(minutes=5))
            for s in ("mallory.x", "alice.x")
        )
        with BackgroundServer(create_app(engine, settings, make_verifier(settings))) as api:

            def call(method: str, path: str, token: str) -> httpx.Response:
                headers = {"Authorization": f"Bearer {token}"}
                return httpx.request(method, api.url + path, headers=headers)

            statuses = [call("POST", "/v1/admin/incidents/inc-1/confirm", mallory).status_code
                        for _ in range(12)]  # fmt: skip
            assert 403 in statuses
            first = statuses.index(403)
            assert statuses[:first] == [200] * first and first <= 9
            assert set(statuses[first:]) == {403}  # blocked from then on

            alerts = call("GET", "/v1/admin/alerts?status=open", alice).json()
            assert len(alerts) == 1
            alert = alerts[0]
            assert (alert["actor"], alert["route"], alert["blocked"]) == (
                "mallory.x",
                "admin.incidents.confirm",
                True,
            )
            assert alert["writes"] >= 5
            metrics = httpx.get(api.url + "/metrics").text
            assert 'rewards_api_write_surges_total{route="admin.incidents.confirm"} 1.0' in metrics

            own = call("POST", f"/v1/admin/alerts/{alert['id']}/clear", mallory)
            assert own.status_code == 409  # not by the actor it is about
            cleared = call("POST", f"/v1/admin/alerts/{alert['id']}/clear", alice)
            assert cleared.status_code == 200 and cleared.json()["cleared_by"] == "alice.x"
            assert call("POST", "/v1/admin/incidents/inc-1/confirm", mallory).status_code == 200
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not received and datetime.now(UTC) < deadline:
            time.sleep(0.1)
    assert received and received[0]["actor"] == "mallory.x" and received[0]["blocked"]
    with unit_of_work(engine) as session:
        actions = [e.action for e in audit.entries(session, subject="mallory.x")]
        assert actions == ["alert.raise", "alert.clear"]
        assert audit.verify_chain(session).intact
    engine.dispose()


EDGE = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # a wall-clock minute's edge


def test_a_burst_straddling_a_minute_edge_is_a_surge() -> None:
    """Three writes within half a second, two before a minute's edge and one after it,
    are one burst. Counted per calendar minute they were 2 + 1 and escaped: an attacker
    timing bursts at the edges could write twice the threshold unseen (and the pages'
    surge test failed whenever its burst crossed an edge)."""
    counter = WriteCounter(SurgePolicy(min_writes=3))
    offsets = (-0.4, -0.2, 0.1)
    found = [counter.record("r", "a", EDGE + timedelta(seconds=s)) for s in offsets]
    assert found[:2] == [None, None]
    assert found[2] == Surge("r", "a", 3, 3.0)


def test_writes_spread_over_more_than_a_minute_are_not_a_surge() -> None:
    counter = WriteCounter(SurgePolicy(min_writes=3))
    found = [counter.record("r", "a", EDGE + timedelta(seconds=s)) for s in (0, 30, 61, 92)]
    assert found == [None] * 4


def test_a_long_burst_raises_one_alert_a_minute() -> None:
    counter = WriteCounter(SurgePolicy(min_writes=3))
    times = [EDGE + timedelta(seconds=s / 2) for s in range(240)]  # 2 a second for 2 min
    fired = [t for t in times if counter.record("r", "a", t) is not None]
    assert fired == [times[2], times[2] + timedelta(seconds=60)]
    assert counter.record("r", "b", times[-1]) is None  # another actor has its own count
