"""schemathesis generates requests from the served OpenAPI schema (bounded examples): no
input may produce a 5xx. The token carries every role, so each route's logic runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from rewards.api.app import create_app
from rewards.api.verifier import dev_issuer, make_verifier
from rewards.db.engine import make_engine
from rewards.services.eligibility_view import refresh_view
from rewards.settings import get_settings
from rewards.sim.server import BackgroundServer
from tests.seeded import NOW, POLICY, ingested_copy

TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def served(databases, seeded, small_fleet, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    engine = make_engine(ingested_copy(databases, seeded, "sqlite", small_fleet))
    key: Path = tmp_path_factory.mktemp("issuer") / "dev.pem"
    config = get_settings(
        dev_issuer_enabled=True,
        dev_issuer_key_file=key,
        season="ignition-s2",
        surge_min_writes=100_000,  # a surge block would hide the write routes' logic
    )
    refresh_view(engine, POLICY, trigger="test", clock=lambda: NOW, lock_ttl=timedelta(minutes=5))
    TOKEN["value"] = dev_issuer(config).token(
        "owner-00001",
        ["supplier", "finance", "admin"],
        now=datetime.now(UTC),
        ttl=timedelta(hours=1),
    )
    with BackgroundServer(create_app(engine, config, make_verifier(config))) as server:
        yield server.url
    engine.dispose()


def test_no_input_produces_a_server_error(served: str) -> None:
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json")
    headers = {"Authorization": f"Bearer {TOKEN['value']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: Any) -> None:
            response = case.call(headers=headers)
            assert response.status_code < 500, (
                case.method,
                case.formatted_path,
                response.text[:200],
            )

        no_server_error()
