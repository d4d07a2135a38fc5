"""The pipeline over the database equals computing from files; incidents count only once
confirmed; the outage detector proposes the April 2024 forced upgrade."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from rewards.core import incident_versions
from rewards.core.outages import DetectorSettings
from rewards.db import audit
from rewards.db.devices import store_devices
from rewards.db.engine import unit_of_work
from rewards.db.incidents import devices_frame
from rewards.db.state import finish_job_run, start_job_run
from rewards.inputs import read_incidents
from rewards.services.eligibility import compute_from_database, compute_from_files
from rewards.services.incidents import (
    IncidentError,
    decide,
    declare,
    detect,
    list_incidents,
)
from rewards.services.intervals import export_intervals
from rewards.sim.fleet import FORCED_UPGRADE, delivered_heartbeats
from rewards.sim.server import UptimeSimulator
from tests.seeded import NOW, POLICY, declare_forced_upgrade

EPOCH_25 = 5


def credited_on_the_25th(results: pl.DataFrame) -> float:
    return float(results.filter(pl.col("epoch") == EPOCH_25)["credited_s"].sum())


def test_database_pipeline_equals_computing_from_files(  # type: ignore[no-untyped-def]
    ingested, small_fleet: UptimeSimulator, tmp_path: Path
) -> None:
    declare_forced_upgrade(ingested)
    from_db, _ = compute_from_database(ingested, POLICY)

    delivered_heartbeats(small_fleet.heartbeats).write_parquet(tmp_path / "hb.parquet")
    (tmp_path / "incidents.json").write_text(
        json.dumps(
            [
                {
                    "id": "apr-25",
                    "start": "2024-04-25T08:05:00Z",
                    "end": "2024-04-25T09:05:00Z",
                    "recovery_deadline": "48h",
                    "scope": {"agent_version_below": "0.10"},
                }
            ]
        )
    )
    with unit_of_work(ingested) as session:
        devices_frame(session).write_parquet(tmp_path / "devices.parquet")
    from_files, _ = compute_from_files(
        POLICY,
        heartbeats=tmp_path / "hb.parquet",
        incidents=tmp_path / "incidents.json",
        devices=tmp_path / "devices.parquet",
    )
    assert from_db.equals(from_files)
    assert credited_on_the_25th(from_db) > 0
    # the stored intervals, exported, give the same results (the versions at the
    # version-scoped incident's start come from the heartbeats: intervals show their edges)
    assert export_intervals(ingested, tmp_path / "iv.parquet") > 0
    beats = delivered_heartbeats(small_fleet.heartbeats)
    incident_versions(beats, read_incidents(tmp_path / "incidents.json")).write_parquet(
        tmp_path / "versions.parquet"
    )
    from_intervals, _ = compute_from_files(
        POLICY,
        intervals=tmp_path / "iv.parquet",
        incidents=tmp_path / "incidents.json",
        devices=tmp_path / "devices.parquet",
        versions=tmp_path / "versions.parquet",
    )
    assert from_intervals.equals(from_db)
    assert from_db.get_column("reason").unique().sort().to_list() == [
        "BELOW_MIN_UPTIME",
        "ELIGIBLE",
        "NO_HEARTBEATS",
        "SUSPENDED",
    ]


def test_the_detector_proposes_the_forced_upgrade_which_counts_only_once_confirmed(  # type: ignore[no-untyped-def]
    ingested,
) -> None:
    settings = DetectorSettings()
    proposals = detect(ingested, POLICY, now=NOW, settings=settings)
    drops = [p for p in proposals if p.source == "detector:fleet-drop"]
    assert len(drops) == 1
    assert abs(drops[0].start - FORCED_UPGRADE) <= timedelta(minutes=10)
    assert detect(ingested, POLICY, now=NOW, settings=settings) == []  # nothing new

    before, _ = compute_from_database(ingested, POLICY)
    assert credited_on_the_25th(before) == 0  # proposed incidents never count
    decide(ingested, drops[0].id, status="confirmed", by="admin@test", now=NOW)
    after, _ = compute_from_database(ingested, POLICY)
    assert credited_on_the_25th(after) > 0
    counted = ["online_s", "bridged_s", "credited_s"]
    gained = after.select(pl.sum_horizontal(counted)) - before.select(pl.sum_horizontal(counted))
    assert gained.min().item() >= 0  # confirming never lowers anyone's counted time
    assert after["eligible"].sum() > before["eligible"].sum()
    with unit_of_work(ingested) as session:
        actions = [e.action for e in audit.entries(session, subject=drops[0].id)]
    assert actions == ["incident.propose", "incident.confirm"]


def test_failed_pulls_become_a_proposed_unreachable_period(engine) -> None:  # type: ignore[no-untyped-def]
    times = [datetime(2024, 4, 21, h, tzinfo=UTC) for h in (1, 2, 3, 4)]
    with unit_of_work(engine) as session:
        for moment, status in zip(
            times, ["succeeded", "failed", "failed", "succeeded"], strict=True
        ):
            run = start_job_run(
                session, job_id="ingest-heartbeats", trigger="scheduled", holder="h:1", now=moment
            )
            finish_job_run(session, run_id=run, now=moment, status=status)
    (proposal,) = detect(engine, POLICY, now=NOW, settings=DetectorSettings())
    assert (proposal.source, proposal.start, proposal.end) == (
        "detector:api-unreachable",
        times[1],
        times[3],
    )
    assert [i.id for i in list_incidents(engine, "proposed")] == [proposal.id]


def test_dismissed_and_edited_incidents_are_audited_and_unknown_ones_refused(engine) -> None:  # type: ignore[no-untyped-def]
    registered = {"device_id": "gpu-1", "owner_id": "o", "gpu_model": "H100", "gpu_count": 1,
                  "status": "active", "registered_at": NOW, "updated_at": NOW}  # fmt: skip
    with unit_of_work(engine) as session:  # an edited scope may name only known devices
        store_devices(session, [registered], now=NOW, actor="registry", source="test")
    declare(
        engine,
        incident_id="x",
        start=FORCED_UPGRADE,
        end=FORCED_UPGRADE + timedelta(hours=1),
        recovery_deadline=timedelta(0),
        scope={"all": True},
        reason="r",
        by="a",
        now=NOW,
    )
    decide(
        engine,
        "x",
        status="confirmed",
        by="b",
        now=NOW,
        changes={"recovery_deadline": timedelta(hours=2), "scope": {"device_ids": ["gpu-1"]}},
    )
    decide(engine, "x", status="dismissed", by="c", now=NOW)
    (incident,) = list_incidents(engine)
    assert (incident.status, incident.recovery_deadline_us) == ("dismissed", 7_200_000_000)
    with unit_of_work(engine) as session:
        assert [(e.actor, e.action) for e in audit.entries(session, subject="x")] == [
            ("a", "incident.declare"),
            ("b", "incident.edit"),
            ("c", "incident.dismiss"),
        ]
    with pytest.raises(IncidentError, match="no incident"):
        decide(engine, "missing", status="confirmed", by="b", now=NOW)
    with pytest.raises(IncidentError, match="not dotted numbers"):
        decide(
            engine,
            "x",
            status="confirmed",
            by="b",
            now=NOW,
            changes={"scope": {"agent_version_below": "one"}},
        )
