"""Runs a job body under its database lock and records the run (every execution)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from rewards.services.runs import JobBusy, RunContext, exclusive_run

log = logging.getLogger("rewards.jobs")


def utc_now() -> datetime:
    return datetime.now(UTC)


def run_recorded(
    engine: Engine,
    job_id: str,
    body: Callable[[RunContext], None],
    *,
    trigger: str,
    lock_ttl: timedelta,
    clock: Callable[[], datetime] = utc_now,
) -> RunContext | None:
    """Run `body` exclusively; None when another process holds the job (logged, not raised,
    for the scheduler; a manual run calls exclusive_run itself to report who holds it)."""
    try:
        with exclusive_run(
            engine, job_id=job_id, trigger=trigger, clock=clock, ttl=lock_ttl
        ) as context:
            body(context)
    except JobBusy as busy:
        log.warning("%s", busy)
        return None
    if context.error:
        log.error("job %s failed: %s", job_id, context.error)
    else:
        log.info(
            "job %s: %d pages, %d records, %d stored, %d quarantined",
            job_id,
            context.pages,
            context.pulled,
            context.stored,
            context.quarantined,
        )
    return context
