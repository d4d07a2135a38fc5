"""What `/metrics` says of the fleet and the jobs, read from the database at each scrape
(so any API process answers the same, whoever runs the jobs): devices online, the newest
heartbeat's age, the published snapshot's age, and each job's runs and latest outcome.
The operator's dashboard and alert rules (ops/) are written against these names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from rewards.core import SeasonPolicy, from_us
from rewards.db import snapshots as snapshot_store
from rewards.db import state
from rewards.db.engine import unit_of_work
from rewards.db.interval_reads import devices_seen_since, last_interval_end


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    status: str
    seconds: float


@dataclass(frozen=True)
class FleetStatus:
    online_devices: int  # seen within a liveness timeout of the newest heartbeat
    newest_heartbeat_age_s: float | None  # now - the newest heartbeat (None: none yet)
    published_age_s: float | None  # now - the season's published snapshot's publication
    runs: list[tuple[str, str, int]]  # (job_id, status, runs recorded)
    latest: list[JobOutcome]  # each job's latest finished run


def fleet_status(engine: Engine, policy: SeasonPolicy, *, now: datetime) -> FleetStatus:
    """The numbers `/metrics` reports, as of `now`."""
    with unit_of_work(engine) as session:
        connection = session.connection()
        newest = last_interval_end(connection)
        online = 0
        if newest is not None:
            online = devices_seen_since(connection, newest - policy.liveness_timeout_us)
        published = snapshot_store.published(session, policy.season_id)
        runs = state.job_run_totals(session)
        latest = [
            JobOutcome(r.job_id, r.status, (r.finished_at - r.started_at).total_seconds())
            for r in state.last_finished_runs(session)
            if r.finished_at is not None
        ]
    return FleetStatus(
        online_devices=online,
        newest_heartbeat_age_s=None if newest is None else _age(now, from_us(newest)),
        published_age_s=(
            None
            if published is None or published.published_at is None
            else _age(now, published.published_at)
        ),
        runs=runs,
        latest=latest,
    )


def _age(now: datetime, then: datetime) -> float:
    return max(timedelta(0), now - then).total_seconds()
