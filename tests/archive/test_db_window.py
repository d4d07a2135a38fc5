"""The database keeps raw heartbeats only for a window (DESIGN 8: by default none); the
intervals stay whole, and what raw heartbeats were still needed for (the agent_version at
a version-scoped incident's start) comes from the archive; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
from sqlalchemy import Engine

from rewards.archive import HeartbeatArchive
from rewards.core import incident_versions, online_intervals
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import load_heartbeats
from rewards.db.interval_reads import load_intervals
from rewards.services.intervals import apply_retention
from rewards.services.versions import incident_versions_of
from rewards.sim.fleet import delivered_heartbeats
from rewards.sim.server import BackgroundServer, UptimeSimulator, create_sim_app
from tests.archive.test_ingest_archive import NOW, SPEC, P, pull
from tests.builders import incidents


def stamp(moment: object) -> str:
    return str(moment).replace(" ", "T").replace("+00:00", "Z")


def test_the_database_keeps_only_its_window_and_the_intervals_stay_whole(
    engine: Engine, tmp_path: Path
) -> None:
    sim = UptimeSimulator(SPEC, token="secret")
    truth = delivered_heartbeats(sim.heartbeats)
    cut = truth.get_column("observed_at").max() - timedelta(hours=12)  # type: ignore[operator]
    archive = HeartbeatArchive(str(tmp_path / "archive"))
    with BackgroundServer(create_sim_app(sim)) as server:
        report = pull(engine, server.url, archive, window=NOW - cut)
    assert report.caught_up and report.stored >= truth.height
    with unit_of_work(engine) as session:
        kept = load_heartbeats(session.connection())
        intervals = load_intervals(session.connection())
    recent = truth.filter(pl.col("observed_at") >= cut)
    assert 0 < kept.height < truth.height and kept.equals(recent)
    assert intervals.equals(online_intervals(truth, P))
    assert archive.heartbeats().equals(truth)
    # the retention job applies the same window to what the database holds
    assert apply_retention(engine, now=NOW, keep=NOW - cut - timedelta(hours=6)) > 0
    with unit_of_work(engine) as session:
        assert load_heartbeats(session.connection()).height < kept.height


def test_incident_versions_come_from_the_archive_when_the_database_keeps_none(
    engine: Engine, tmp_path: Path
) -> None:
    sim = UptimeSimulator(SPEC, token="secret")
    truth = delivered_heartbeats(sim.heartbeats)
    archive = HeartbeatArchive(str(tmp_path / "archive"))
    with BackgroundServer(create_sim_app(sim)) as server:
        assert pull(engine, server.url, archive, window=timedelta(0)).caught_up
    times = truth.get_column("observed_at").sort()
    starts = [times[int(times.len() * q)] for q in (0.2, 0.5, 0.9)]
    confirmed = incidents(
        *[
            {"id": f"inc-{k}", "start": stamp(s), "end": stamp(s + timedelta(hours=1)),
             "scope": {"agent_version_below": "9.0"}}
            for k, s in enumerate(starts)
        ]
    )  # fmt: skip
    expected = incident_versions(truth, confirmed).sort("incident_id", "device_id")
    with unit_of_work(engine) as session:
        connection = session.connection()
        assert load_heartbeats(connection).is_empty()
        intervals = load_intervals(connection)
        got = incident_versions_of(connection, confirmed, intervals, P, archive)
        blind = incident_versions_of(connection, confirmed, intervals, P, None)
    assert expected.height > 10 and got.sort("incident_id", "device_id").equals(expected)
    assert blind.height < expected.height  # the intervals alone cannot tell mid-interval
