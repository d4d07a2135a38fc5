"""What the services hand to the doors: plain, frozen records of stored things.

Entry points (API, pages, CLI, jobs) never hold an ORM row: a row is bound to a database
session, may lazy-load or be flushed by accident, and would tie every door to the table
layout. Each service converts the rows it read into these records before returning; a
record's fields are the stored columns the doors may show.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Self


class Record:
    """A frozen dataclass made from any object with the same attribute names."""

    @classmethod
    def of(cls, row: Any) -> Self:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class SnapshotRecord(Record):
    """A snapshot's header (DESIGN 5): which season and version, over which inputs, with
    which totals, content hash, Merkle root and audit-log heads."""

    id: int
    season: str
    version: int
    status: str  # draft, published, superseded
    epoch_first: int
    epoch_last: int
    policy: str  # the canonical policy JSON the rows were computed with
    policy_hash: str
    input_fingerprint: str
    code_version: str
    trigger: str
    triggered_by: str
    reason: str
    supersedes_id: int | None
    device_epoch_rows: int
    devices: int
    suppliers: int
    eligible_device_epochs: int
    total_pool: int
    total_paid: int
    total_unassigned: int
    content_hash: str
    merkle_root: str
    leaf_format: int  # 2: leaves name commitments (DESIGN 9); 1: owner ids
    job_run_id: int | None
    created_at: datetime
    published_at: datetime | None
    published_by: str | None
    audit_entries: int | None
    audit_hash: str | None
    published_audit_entries: int | None
    published_audit_hash: str | None

    @property
    def label(self) -> str:
        """How people name a snapshot: <season>-v<version>."""
        return f"{self.season}-v{self.version}"


@dataclass(frozen=True)
class IncidentRecord(Record):
    """A declared or proposed incident window (DESIGN 4.5); `scope` is its JSON."""

    id: str
    start: datetime
    end: datetime
    recovery_deadline_us: int
    scope: str
    status: str  # proposed, confirmed, dismissed
    source: str
    reason: str
    created_at: datetime
    updated_at: datetime
    decided_by: str | None


@dataclass(frozen=True)
class AlertRecord(Record):
    """Something an admin must look at; `blocked` keeps `actor` from writing."""

    id: int
    raised_at: datetime
    kind: str
    route: str
    actor: str
    writes: int
    threshold: float
    blocked: bool
    status: str  # open, cleared
    cleared_by: str | None
    cleared_at: datetime | None


@dataclass(frozen=True)
class JobRunRecord(Record):
    """One execution of a job, with what it did or why it failed."""

    id: int
    job_id: str
    trigger: str
    holder: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    pages: int
    records_pulled: int
    records_stored: int
    records_quarantined: int
    records_deleted: int
    error: str | None
    computed_on: str | None  # who computed its shards (snapshot and view runs)
