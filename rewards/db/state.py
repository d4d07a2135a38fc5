"""Small bookkeeping tables: ingest cursors, quarantine, leases and job runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlmodel import Session, col

from rewards.db.bulk import insert_missing
from rewards.db.tables import IngestCursor, JobRun, Lease, QuarantinedRecord


def get_cursor(session: Session, stream: str) -> str | None:
    """Where `stream` was last read up to (None: from the beginning)."""
    row = session.get(IngestCursor, stream)
    return row.cursor if row else None


def committed_pages(session: Session, stream: str) -> int:
    """How many pages of `stream` have committed (with their cursor)."""
    row = session.get(IngestCursor, stream)
    return row.pages if row else 0


def set_cursor(
    session: Session,
    stream: str,
    cursor: str | None,
    *,
    now: datetime,
    observed_us: int | None = None,
) -> None:
    """Move `stream`'s cursor past one more page, and its watermark up to `observed_us`
    (the latest observed_at of the page; it never moves back); commits with the caller's
    data or not at all."""
    row = session.get(IngestCursor, stream)
    if row is None:
        row = IngestCursor(stream=stream, cursor=cursor, updated_at=now, pages=1)
        session.add(row)
    else:
        row.cursor, row.updated_at, row.pages = cursor, now, row.pages + 1
    if observed_us is not None and (row.watermark is None or observed_us > row.watermark):
        row.watermark = observed_us
    session.flush()


def watermark(session: Session, stream: str) -> int | None:
    """The latest observed_at (UTC µs) `stream` has stored, None before its first record."""
    row = session.get(IngestCursor, stream)
    return row.watermark if row else None


def quarantine(
    session: Session,
    *,
    stream: str,
    source: str,
    items: Sequence[tuple[str, str]],
    now: datetime,
) -> None:
    """Store refused records: (raw, reason) pairs from `source`."""
    if items:
        session.connection().execute(
            insert(QuarantinedRecord),
            [
                {
                    "stream": stream,
                    "source": source,
                    "received_at": now,
                    "raw": raw,
                    "reason": reason,
                }
                for raw, reason in items
            ],
        )


def quarantined(session: Session, stream: str | None = None) -> list[QuarantinedRecord]:
    """Quarantined records, oldest first."""
    query = select(QuarantinedRecord).order_by(col(QuarantinedRecord.id))
    if stream:
        query = query.where(col(QuarantinedRecord.stream) == stream)
    return list(session.scalars(query))


def try_acquire_lease(
    session: Session, *, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Take or renew lease `name` for `holder` until now + ttl; False if another holds it.

    Safe under concurrency on both dialects: the conditional UPDATE and the INSERT of a
    missing lease each succeed for at most one contender.
    """
    connection: Connection = session.connection()
    taken = connection.execute(
        update(Lease)
        .where(col(Lease.name) == name)
        .where(or_(col(Lease.holder) == holder, col(Lease.expires_at) <= now))
        .values(holder=holder, expires_at=now + ttl)
    ).rowcount
    if taken:
        return True
    if session.get(Lease, name) is not None:
        return False
    inserted = insert_missing(
        connection,
        Lease,
        "name",
        [{"name": name, "holder": holder, "acquired_at": now, "expires_at": now + ttl}],
    )
    return bool(inserted)


def release_lease(session: Session, *, name: str, holder: str) -> None:
    """Give up lease `name` if `holder` has it."""
    session.connection().execute(
        delete(Lease).where(and_(col(Lease.name) == name, col(Lease.holder) == holder))
    )


def lease(session: Session, name: str) -> Lease | None:
    """The current lease `name`, expired or not."""
    return session.get(Lease, name)


def start_job_run(
    session: Session,
    *,
    job_id: str,
    trigger: str,
    holder: str,
    now: datetime,
    status: str = "running",
) -> int:
    """Record the start of a run and return its id."""
    run = JobRun(job_id=job_id, trigger=trigger, holder=holder, started_at=now, status=status)
    session.add(run)
    session.flush()
    assert run.id is not None
    return run.id


def finish_job_run(
    session: Session,
    *,
    run_id: int,
    now: datetime,
    status: str,
    pages: int = 0,
    pulled: int = 0,
    stored: int = 0,
    quarantined: int = 0,
    deleted: int = 0,
    error: str | None = None,
    computed_on: str | None = None,
) -> None:
    """Record how run `run_id` ended."""
    session.connection().execute(
        update(JobRun)
        .where(col(JobRun.id) == run_id)
        .values(
            finished_at=now,
            status=status,
            pages=pages,
            records_pulled=pulled,
            records_stored=stored,
            records_quarantined=quarantined,
            records_deleted=deleted,
            error=error,
            computed_on=computed_on,
        )
    )


def abandon_stale_runs(session: Session, *, job_id: str, now: datetime) -> int:
    """Mark runs of `job_id` still 'running' as abandoned: their process died holding the
    lock, which has since lapsed. Called by the next holder of the job's lock."""
    return int(
        session.connection()
        .execute(
            update(JobRun)
            .where(col(JobRun.job_id) == job_id, col(JobRun.status) == "running")
            .values(
                status="abandoned",
                finished_at=now,
                error="the process running this job stopped before finishing",
            )
        )
        .rowcount
    )


def job_runs(
    session: Session,
    *,
    job_id: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[JobRun]:
    """The latest runs, newest first (`before_id`: those older than that run)."""
    query = select(JobRun).order_by(col(JobRun.id).desc()).limit(limit)
    if job_id:
        query = query.where(col(JobRun.job_id) == job_id)
    if before_id is not None:
        query = query.where(col(JobRun.id) < before_id)
    return list(session.scalars(query))


def job_run_totals(session: Session) -> list[tuple[str, str, int]]:
    """(job_id, status, runs) over every recorded run."""
    found = session.execute(
        select(col(JobRun.job_id), col(JobRun.status), func.count()).group_by(
            col(JobRun.job_id), col(JobRun.status)
        )
    ).all()
    return [(str(j), str(s), int(n)) for j, s, n in found]


def last_finished_runs(session: Session) -> list[JobRun]:
    """Each job's latest finished run."""
    latest = (
        select(func.max(JobRun.id))
        .where(col(JobRun.finished_at).is_not(None))
        .group_by(col(JobRun.job_id))
    )
    return list(session.scalars(select(JobRun).where(col(JobRun.id).in_(latest))))
