"""A season reads only the stored history its results depend on (core/season_window.py):
a database holds every season's intervals, and a season's snapshot is what the whole
history gives, by one shard or many, while its inputs hold only its window."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sqlalchemy import Engine

from rewards.core import to_us
from rewards.db.engine import consistent_read
from rewards.db.incidents import devices_frame, incidents, incidents_frame, owners_frame
from rewards.db.interval_reads import load_intervals
from rewards.services.computing import ComputePlan
from rewards.services.incidents import declare
from rewards.services.snapshot_runs import Inputs, freeze_inputs, run_snapshot
from rewards.services.snapshots import stored_rows
from rewards.services.versions import incident_versions_of
from tests.seeded import KEY, LOCK, NOW, POLICY, declare_forced_upgrade

# Three days in the middle of the fleet's stored week (2024-04-20 to 27).
MIDDLE = replace(
    POLICY, start=datetime(2024, 4, 23, tzinfo=UTC), end=datetime(2024, 4, 26, tzinfo=UTC)
)


def _whole_history(engine: Engine) -> Inputs:
    """The inputs as they were read before: every stored interval, every confirmed
    incident."""
    with consistent_read(engine) as (connection, session):
        confirmed = incidents_frame(incidents(session, "confirmed"))
        intervals = load_intervals(connection)
        return Inputs(
            intervals=intervals,
            incidents=confirmed,
            versions=incident_versions_of(connection, confirmed, intervals, MIDDLE, None),
            devices=devices_frame(session),
            owners=owners_frame(session),
        )


def _a_gap_across(inputs: Inputs, moment: datetime) -> datetime:
    """Where some device's gap from before `moment` to after it begins (the earliest after
    the fleet's first day)."""
    gaps = (
        inputs.intervals.sort("device_id", "start")
        .with_columns(g1=pl.col("start").shift(-1).over("device_id"), g0=pl.col("end"))
        .filter(
            (pl.col("g0") < moment)
            & (pl.col("g1") > moment)
            & (pl.col("g0") > datetime(2024, 4, 21, tzinfo=UTC))
        )
        .sort("g0")
    )
    assert gaps.height, "the april-2024 fleet should have a device silent across the day"
    return gaps["g0"][0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("shard_devices", [None, 7])
def test_a_season_in_the_middle_of_the_history_reads_its_window_and_pays_the_same(
    ingested: Engine, shard_devices: int | None
) -> None:
    declare_forced_upgrade(ingested)  # 04-25, 48 h to recover: inside
    # an outage that began before the season for a device silent into it, and recovers
    # in it; and one over before it
    g0 = _a_gap_across(_whole_history(ingested), MIDDLE.start)
    began = g0 - timedelta(minutes=10)
    for name, start, end, recovery, scope in (
        ("outage-early", began, g0 + timedelta(hours=1), MIDDLE.start - g0 + timedelta(hours=6),
         {"agent_version_below": "0.10"}),
        ("outage-20", datetime(2024, 4, 20, 6, tzinfo=UTC), datetime(2024, 4, 20, 7, tzinfo=UTC),
         timedelta(hours=2), {"all": True}),
    ):  # fmt: skip
        declare(
            ingested, incident_id=name, start=start, end=end, recovery_deadline=recovery,
            scope=scope, reason="outage", by="admin@test", now=NOW,
        )  # fmt: skip
    whole = _whole_history(ingested)
    windowed = freeze_inputs(ingested, MIDDLE)
    assert sorted(windowed.incidents["incident_id"]) == ["apr-25", "outage-early"]
    lo = to_us(began)  # the window reaches back to outage-early
    early = whole.intervals.filter(whole.intervals["end"].dt.epoch("us") <= lo)
    assert early.height > 0 and windowed.intervals.height < whole.intervals.height
    assert set(windowed.intervals["device_id"]) == set(whole.intervals["device_id"])
    reached = whole.intervals.filter(pl.col("end") > began, pl.col("start") < MIDDLE.end)
    assert reached.join(windowed.intervals, on=["device_id", "start"], how="anti").is_empty()

    epochs = range(MIDDLE.epoch_count)
    plan = ComputePlan() if shard_devices is None else ComputePlan(shard_devices=shard_devices)
    made = run_snapshot(
        ingested, MIDDLE, epochs=epochs, trigger="manual", triggered_by="admin@test",
        reason="test", clock=lambda: NOW, key=KEY, lock_ttl=LOCK, plan=plan,
    ).snapshot  # fmt: skip
    expected = whole.rows(MIDDLE, epochs)
    crediting = expected.get_column("crediting_incidents").explode().drop_nulls().unique()
    assert sorted(crediting) == ["apr-25", "outage-early"]  # both credit in it
    assert stored_rows(ingested, made).equals(expected)
    assert made.input_fingerprint == windowed.fingerprint() != whole.fingerprint()
