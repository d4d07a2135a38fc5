"""A small april-2024 fleet ingested over real HTTP once per dialect per test session;
each test gets its own copy of that database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from rewards.db.engine import make_engine
from rewards.seasons import load_policy
from rewards.services.incidents import declare
from rewards.services.ingest import pull_stream
from rewards.settings import REPO_ROOT
from rewards.sim.fleet import FORCED_UPGRADE, FleetSpec
from rewards.sim.server import BackgroundServer, UptimeSimulator, create_sim_app
from rewards.uptime.client import RetryPolicy, UptimeClient

POLICY = load_policy(REPO_ROOT / "config" / "seasons" / "ignition-s2.toml")
NOW = datetime(2024, 5, 1, tzinfo=UTC)
WEEK = range(7)
LOCK = timedelta(minutes=5)
KEY = bytes(range(32))  # the tests' publication key (DESIGN 9); a site's key file holds it


@pytest.fixture(scope="session")
def small_fleet() -> UptimeSimulator:
    return UptimeSimulator(FleetSpec(seed=5, devices=80, days=7), token="secret")


def ingest(engine: Engine, simulator: UptimeSimulator) -> Engine:
    with (
        BackgroundServer(create_sim_app(simulator)) as server,
        UptimeClient(server.url, "secret", retry=RetryPolicy(backoff_base_s=0.001)) as client,
    ):
        for stream in ("devices", "heartbeats"):
            report = pull_stream(
                engine=engine,
                client=client,
                stream=stream,
                policy=POLICY,
                page_size=20_000,
                max_skew=timedelta(minutes=5),
                clock=lambda: NOW,
            )
            assert report.caught_up, report.error
    return engine


@pytest.fixture(scope="session")
def seeded(databases, small_fleet: UptimeSimulator) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """One ingested database per dialect, made once; each test works on its own copy."""
    return {}


def ingested_copy(databases, seeded, dialect, simulator) -> str:  # type: ignore[no-untyped-def]
    if dialect not in seeded:
        url = databases.fresh(dialect)
        engine = make_engine(url)
        ingest(engine, simulator)
        engine.dispose()
        seeded[dialect] = url
    return str(databases.copy(seeded[dialect]))


@pytest.fixture
def ingested(databases, seeded: dict[str, str], dialect: str, small_fleet) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = make_engine(ingested_copy(databases, seeded, dialect, small_fleet))
    yield engine
    engine.dispose()


def declare_forced_upgrade(engine: Engine) -> None:
    """The admin's incident for the forced upgrade: devices below 0.10, 48 h to recover."""
    declare(
        engine,
        incident_id="apr-25",
        start=FORCED_UPGRADE,
        end=FORCED_UPGRADE + timedelta(hours=1),
        recovery_deadline=timedelta(hours=48),
        scope={"agent_version_below": "0.10"},
        reason="forced upgrade",
        by="admin@test",
        now=NOW,
    )
