"""Incidents and the inputs the eligibility pipeline reads from the database."""

from __future__ import annotations

from datetime import datetime

import polars as pl
from sqlalchemy import select
from sqlmodel import Session, col

from rewards.core import INCIDENTS, OWNERS, TIME, IncidentScope
from rewards.db.devices import metadata_history
from rewards.db.tables import Incident, JobRun


def incidents(session: Session, status: str | None = None) -> list[Incident]:
    """Incidents, oldest start first, optionally of one status."""
    query = select(Incident).order_by(col(Incident.start), col(Incident.id))
    if status:
        query = query.where(col(Incident.status) == status)
    return list(session.scalars(query))


def incidents_frame(rows: list[Incident]) -> pl.DataFrame:
    """An INCIDENTS frame of stored incidents (their scopes read by IncidentScope)."""
    records = []
    for row in rows:
        records.append(
            {
                "incident_id": row.id,
                "start": row.start,
                "end": row.end,
                "recovery_deadline_us": row.recovery_deadline_us,
                **IncidentScope.from_json(row.scope).columns(),
            }
        )
    return pl.DataFrame(records, schema=dict(INCIDENTS))


def devices_frame(session: Session) -> pl.DataFrame:
    """The metadata history as a DEVICES frame (suspended: status 'suspended')."""
    return devices_of(metadata_history(session))


def devices_of(history: pl.DataFrame) -> pl.DataFrame:
    """A DEVICES frame of a `metadata_history` frame."""
    return history.select(
        "device_id",
        "gpu_model",
        (pl.col("status") == "suspended").alias("suspended"),
        "valid_from",
        "valid_to",
    )


def owners_frame(session: Session) -> pl.DataFrame:
    """The ownership history as an OWNERS frame."""
    return owners_of(metadata_history(session))


def owners_of(history: pl.DataFrame) -> pl.DataFrame:
    """An OWNERS frame of a `metadata_history` frame."""
    return history.select(list(OWNERS))


def job_runs_frame(session: Session, job_id: str, since: datetime) -> pl.DataFrame:
    """started_at and status of a job's runs since `since`."""
    rows = session.execute(
        select(col(JobRun.started_at), col(JobRun.status)).where(
            col(JobRun.job_id) == job_id, col(JobRun.started_at) >= since
        )
    ).all()
    return pl.DataFrame(
        [tuple(r) for r in rows], orient="row", schema={"started_at": TIME, "status": pl.String()}
    )
