"""Every scheduled job, registered in one place, and the leader lease that guards them.

APScheduler 3 must not share a job store between processes, so each `rewards scheduler`
keeps its jobs in memory and only the process holding the `scheduler-leader` lease runs
them; the others wait as standbys and take over when the leader's lease lapses.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from jobs.ingest import (
    ARCHIVE_JOB_ID,
    JOB_IDS,
    OUTAGES_JOB_ID,
    RETENTION_JOB_ID,
    archive_job,
    outages_job,
    pull_job,
    retention_job,
)
from jobs.runner import run_recorded, utc_now
from jobs.snapshots import SNAPSHOT_JOB_ID, VIEW_JOB_ID, snapshot_job, view_job
from rewards.core import SeasonPolicy
from rewards.services.runs import RunContext, hold_lease, process_identity, release
from rewards.settings import Settings

log = logging.getLogger("rewards.scheduler")
LEADER_LEASE = "scheduler-leader"


@dataclass(frozen=True)
class ScheduledJob:
    """One entry of the registry: what runs, how often, and how late it may still start."""

    job_id: str
    run: Callable[[], object]
    every: timedelta
    name: str
    misfire_grace: timedelta
    start_now: bool  # first run as the scheduler starts, not one period later


def build_scheduler(
    engine: Engine,
    settings: Settings,
    policy: SeasonPolicy,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> BackgroundScheduler:
    """A scheduler with every job of `scheduled_jobs` registered (not started)."""
    scheduler = BackgroundScheduler(timezone=UTC)
    for job in scheduled_jobs(engine, settings, policy, clock=clock):
        register(scheduler, job, clock=clock)
    return scheduler


def register(
    scheduler: BackgroundScheduler, job: ScheduledJob, *, clock: Callable[[], datetime]
) -> None:
    """Add `job` as STYLE 6 asks: an explicit id, replace_existing, coalesce, one instance
    at a time and a deliberate misfire grace."""
    scheduler.add_job(
        job.run,
        "interval",
        seconds=job.every.total_seconds(),
        id=job.job_id,
        name=job.name,
        replace_existing=True,
        coalesce=True,  # a backlog of missed runs is one run: each catches up by itself
        max_instances=1,
        misfire_grace_time=int(job.misfire_grace.total_seconds()),
        **({"next_run_time": clock()} if job.start_now else {}),
    )


def scheduled_jobs(
    engine: Engine,
    settings: Settings,
    policy: SeasonPolicy,
    *,
    clock: Callable[[], datetime],
) -> list[ScheduledJob]:
    """Every scheduled job, in one place.

    A pull that starts late is still useful; one more than a period late is replaced by
    the next one anyway. The same holds for the outage detector, the snapshot check and
    the view rebuild. A day's prune may run hours late; it is not urgent.
    """

    def recorded(job_id: str, body: Callable[[RunContext], None]) -> Callable[[], object]:
        """`body` run under the job's lock, its run recorded (jobs/runner.py)."""
        return functools.partial(
            run_recorded,
            engine,
            job_id,
            body,
            trigger="scheduled",
            lock_ttl=settings.job_lock,
            clock=clock,
        )

    pulls = [
        ScheduledJob(
            JOB_IDS[stream],
            recorded(JOB_IDS[stream], pull_job(engine, settings, policy, stream, clock=clock)),
            every=timedelta(seconds=seconds),
            name=f"pull {stream} from the uptime API",
            misfire_grace=timedelta(seconds=seconds),
            start_now=True,
        )
        for stream, seconds in (
            ("devices", settings.devices_every_s),
            ("heartbeats", settings.heartbeats_every_s),
        )
    ]
    return [
        *pulls,
        ScheduledJob(
            OUTAGES_JOB_ID,
            recorded(OUTAGES_JOB_ID, outages_job(engine, settings, policy, clock=clock)),
            every=timedelta(seconds=settings.outages_every_s),
            name="propose incidents from fleet drops and failed pulls",
            misfire_grace=timedelta(seconds=settings.outages_every_s),
            start_now=False,
        ),
        # The snapshot and view jobs take the season's own lock and record their own runs.
        ScheduledJob(
            SNAPSHOT_JOB_ID,
            snapshot_job(engine, settings, policy, clock=clock),
            every=timedelta(seconds=settings.snapshots_every_s),
            name="snapshot the season after each epoch settles",
            misfire_grace=timedelta(seconds=settings.snapshots_every_s),
            start_now=False,
        ),
        ScheduledJob(
            VIEW_JOB_ID,
            view_job(engine, settings, policy, clock=clock),
            every=timedelta(seconds=settings.eligibility_view_every_s),
            name="rebuild the suppliers' eligibility view",
            misfire_grace=timedelta(seconds=settings.eligibility_view_every_s),
            start_now=True,
        ),
        *_upkeep_jobs(engine, settings, recorded, clock=clock),
    ]


def _upkeep_jobs(
    engine: Engine,
    settings: Settings,
    recorded: Callable[[str, Callable[[RunContext], None]], Callable[[], object]],
    *,
    clock: Callable[[], datetime],
) -> list[ScheduledJob]:
    """The storage upkeep: the database's raw heartbeats and the heartbeat archive."""
    return [
        ScheduledJob(
            RETENTION_JOB_ID,
            recorded(RETENTION_JOB_ID, retention_job(engine, settings, clock=clock)),
            every=timedelta(hours=1),
            name="drop the database's raw heartbeats past heartbeat_db_window_s",
            misfire_grace=timedelta(hours=1),
            start_now=False,
        ),
        ScheduledJob(
            ARCHIVE_JOB_ID,
            recorded(ARCHIVE_JOB_ID, archive_job(settings, clock=clock)),
            every=timedelta(hours=1),
            name="compact the heartbeat archive, apply its retention, vacuum",
            misfire_grace=timedelta(hours=1),
            start_now=False,
        ),
    ]


def run_scheduler(
    engine: Engine,
    settings: Settings,
    policy: SeasonPolicy,
    *,
    stop: threading.Event,
    clock: Callable[[], datetime] = utc_now,
    holder: str | None = None,
) -> None:
    """Lead or stand by until `stop` is set; jobs run only while this process leads."""
    holder = holder or process_identity()
    ttl = timedelta(seconds=settings.leader_lease_s)
    scheduler: BackgroundScheduler | None = None
    log.info("scheduler %s starting as standby", holder)
    try:
        while not stop.is_set():
            leading = hold_lease(engine, name=LEADER_LEASE, holder=holder, now=clock(), ttl=ttl)
            if leading and scheduler is None:
                log.info("scheduler %s is now the leader", holder)
                scheduler = build_scheduler(engine, settings, policy, clock=clock)
                scheduler.start()
            elif not leading and scheduler is not None:
                log.warning("scheduler %s lost the leader lease; standing by", holder)
                scheduler.shutdown(wait=False)
                scheduler = None
            stop.wait(ttl.total_seconds() / 3)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        release(engine, name=LEADER_LEASE, holder=holder)
        log.info("scheduler %s stopped", holder)
