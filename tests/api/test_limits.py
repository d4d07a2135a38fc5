"""Rate limits per token subject and per client address answer 429 with Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from rewards.api.app import create_app
from rewards.api.verifier import dev_issuer, make_verifier
from rewards.db.engine import make_engine
from rewards.settings import get_settings
from rewards.sim.server import BackgroundServer
from tests.api.loopback import inside_one_rate_window


def test_rate_limits_per_subject_and_per_address(databases, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(databases.fresh("sqlite"))
    settings = get_settings(
        dev_issuer_enabled=True,
        dev_issuer_key_file=tmp_path / "dev.pem",
        rate_limit_per_subject="5/minute",
        rate_limit_per_ip="12/minute",
    )
    issuer = dev_issuer(settings)
    now = datetime.now(UTC)
    alice, bob = (
        issuer.token(sub, ["supplier"], now=now, ttl=timedelta(minutes=5)) for sub in ("a", "b")
    )
    with BackgroundServer(create_app(engine, settings, make_verifier(settings))) as server:

        def me(token: str) -> httpx.Response:
            return httpx.get(server.url + "/v1/me", headers={"Authorization": f"Bearer {token}"})

        inside_one_rate_window(margin_s=20)
        assert [me(alice).status_code for _ in range(6)] == [200] * 5 + [429]
        refused = me(alice)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
        assert me(bob).status_code == 200  # another subject has its own allowance
        statuses = [httpx.get(server.url + "/healthz").status_code for _ in range(6)]
        assert statuses[-1] == 429  # this address has used its 12 requests
    engine.dispose()


def test_an_unhandled_error_is_a_bare_500_and_counted(databases, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(databases.fresh("sqlite"))
    app = create_app(engine, get_settings(), None)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail: password=hunter2")

    with BackgroundServer(app) as server:
        response = httpx.get(server.url + "/boom")
        metrics = httpx.get(server.url + "/metrics").text
        big = httpx.post(server.url + "/boom", content=b"x" * 70_000)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "https://ignition-rewards.dev/problems/internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": "something went wrong",
    }
    assert "hunter2" not in response.text
    assert 'rewards_api_requests_total{route="/boom",status="500"} 1.0' in metrics
    assert big.status_code == 413
