"""The database's tallies give the very counts the intervals give (both dialects)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from sqlalchemy import Engine

from rewards.core import incident_versions
from rewards.core.frames import to_us
from rewards.core.outages import counts_from_tallies, fleet_online_counts, tallies
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import load_heartbeats
from rewards.db.interval_reads import interval_tallies, load_device_intervals, load_intervals
from rewards.services.intervals import stored_intervals
from rewards.services.versions import incident_versions_of
from tests.builders import incidents
from tests.seeded import POLICY


def test_the_database_tallies_what_the_core_tallies(ingested: Engine) -> None:
    intervals = stored_intervals(ingested)
    start = POLICY.start + timedelta(seconds=17)  # instants off the minute: rounding shows
    for step in (timedelta(minutes=1), timedelta(minutes=7), timedelta(hours=1)):
        end = start + 7 * timedelta(days=1)
        with unit_of_work(ingested) as session:
            counted = interval_tallies(
                session.connection(),
                start_us=to_us(start),
                step_us=step // timedelta(microseconds=1),
                until_us=to_us(end),
            )
        expected = tallies(intervals, start=start, step=step)
        limit = len(range(to_us(start), to_us(end), step // timedelta(microseconds=1)))
        relevant = expected.filter(expected["k"] < limit).sort("bound", "k")
        assert counted.filter(counted["k"] < limit).sort("bound", "k").equals(relevant)
        counts = counts_from_tallies(counted, start=start, end=end, step=step)
        assert counts.equals(fleet_online_counts(intervals, start=start, end=end, step=step))
        assert counts.get_column("online").max() > 0


def test_versions_from_the_stores_are_the_exact_ones_for_the_fleet_and_one_device(
    ingested: Engine,
) -> None:
    """Incident versions from the intervals and the heartbeats near the start equal those
    from every heartbeat; one device's are the fleet's for that device."""
    scoped = incidents(
        {"id": "apr-25", "start": "2024-04-25T08:05:00Z", "end": "2024-04-25T09:00:00Z",
         "deadline": "48h", "scope": {"agent_version_below": "0.10"}},
    )  # fmt: skip
    with unit_of_work(ingested) as session:
        c = session.connection()
        everyone = incident_versions_of(c, scoped, load_intervals(c), POLICY, None)
        exact = incident_versions(load_heartbeats(c), scoped)
        device = everyone.get_column("device_id").sort()[3]
        mine = load_device_intervals(c, device)
        one = incident_versions_of(c, scoped, mine, POLICY, None, device)
    assert everyone.sort("device_id").equals(exact.sort("device_id")) and exact.height > 3
    assert one.equals(everyone.filter(pl.col("device_id") == device)) and one.height == 1
