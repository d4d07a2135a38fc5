"""Use case: run a job exclusively and record the run, whatever happens to it.

The job's lease in the database is the lock: a manual `rewards ingest --once` and a
scheduled pull can never run side by side, in one process or several, on either
database. A holder that dies leaves a lease that lapses after its ttl and a run the next
holder marks abandoned.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from rewards.db import state
from rewards.db.engine import unit_of_work
from rewards.services.errors import ServiceError
from rewards.services.records import JobRunRecord

log = logging.getLogger("rewards.jobs")


def process_identity() -> str:
    """host:pid, how leases and runs name their holder."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobBusy(ServiceError, RuntimeError):
    """Another process holds the job's lock."""

    kind = "busy"


@dataclass
class RunContext:
    """Handed to a running job: renew the lock between steps; fill in the counts."""

    run_id: int
    renew: Callable[[], None]
    pages: int = 0
    pulled: int = 0
    stored: int = 0
    quarantined: int = 0
    deleted: int = 0
    error: str | None = None
    computed_on: str | None = None  # the executor's description, for runs that compute


@contextmanager
def exclusive_run(
    engine: Engine,
    *,
    job_id: str,
    trigger: str,
    clock: Callable[[], datetime],
    ttl: timedelta,
    holder: str | None = None,
) -> Iterator[RunContext]:
    """Hold job `job_id`'s lock for the block and record the run (raises JobBusy).

    Each run holds the lock under its own name (host:pid/nonce), so two runs of one job
    in one process exclude each other just as runs in two processes do.
    """
    holder = holder or f"{process_identity()}/{uuid.uuid4().hex[:8]}"
    name = f"job:{job_id}"
    with unit_of_work(engine) as session:
        if not state.try_acquire_lease(session, name=name, holder=holder, now=clock(), ttl=ttl):
            current = state.lease(session, name)
            who = (
                f"{current.holder} until {current.expires_at:%Y-%m-%d %H:%M:%S}Z"
                if current
                else "?"
            )
            raise JobBusy(f"job {job_id} is already running ({who}); try again later")
        state.abandon_stale_runs(session, job_id=job_id, now=clock())
        run_id = state.start_job_run(
            session, job_id=job_id, trigger=trigger, holder=holder, now=clock()
        )

    lost = threading.Event()

    def renew() -> None:
        if lost.is_set():
            raise JobBusy(f"job {job_id} lost its lock to another process")
        with unit_of_work(engine) as s:
            if not state.try_acquire_lease(s, name=name, holder=holder, now=clock(), ttl=ttl):
                lost.set()
                raise JobBusy(f"job {job_id} lost its lock to another process")

    context = RunContext(run_id=run_id, renew=renew)
    status, error = "succeeded", None
    stop = threading.Event()
    keeper = threading.Thread(
        target=_keep, args=(renew, ttl, stop), name=f"lease-{job_id}", daemon=True
    )
    keeper.start()
    try:
        yield context
        if context.error:
            status, error = "failed", context.error
    except BaseException as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stop.set()
        keeper.join()
        with unit_of_work(engine) as session:
            state.finish_job_run(
                session,
                run_id=run_id,
                now=clock(),
                status=status,
                pages=context.pages,
                pulled=context.pulled,
                stored=context.stored,
                quarantined=context.quarantined,
                deleted=context.deleted,
                error=error,
                computed_on=context.computed_on,
            )
            state.release_lease(session, name=name, holder=holder)


def _keep(renew: Callable[[], None], ttl: timedelta, stop: threading.Event) -> None:
    """Renew the lock every third of its ttl until `stop`, so that a step slower than the
    ttl (a page dripping in) never lets a second runner in (issue 12 item 16). A lost lock
    ends the renewals; the body learns of it at its next renew()."""
    while not stop.wait(ttl.total_seconds() / 3):
        try:
            renew()
        except JobBusy:
            log.error("%s", "a running job lost its lock; it stops at its next step")
            return
        except Exception as exc:  # a database blip: the next beat tries again
            log.warning("renewing a job lock failed (%s); retrying", type(exc).__name__)


def hold_lease(engine: Engine, *, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew lease `name`; False while another holder's lease is unexpired."""
    with unit_of_work(engine) as session:
        return state.try_acquire_lease(session, name=name, holder=holder, now=now, ttl=ttl)


def release(engine: Engine, *, name: str, holder: str) -> None:
    """Give up lease `name` if `holder` has it."""
    with unit_of_work(engine) as session:
        state.release_lease(session, name=name, holder=holder)


def recent_runs(engine: Engine, limit: int, before_id: int | None = None) -> list[JobRunRecord]:
    """The latest job runs, newest first (`before_id`: those older than that run)."""
    with unit_of_work(engine) as session:
        found = state.job_runs(session, limit=limit, before_id=before_id)
        return [JobRunRecord.of(r) for r in found]
