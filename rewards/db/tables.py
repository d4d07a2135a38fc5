"""Tables of the engine. Hot tables (heartbeats, intervals) keep time as integer
microseconds since the Unix epoch, UTC: exact, the same on both databases, and the native
representation of the core's polars datetimes, so bulk loads convert nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from rewards.db.types import UTCDateTime

# Equal constraint names on SQLite and PostgreSQL keep migrations and autogenerate honest.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata

ID = 200  # longest device, owner, boot or version identifier accepted
OPEN_FILLFACTOR = 50  # percent of each page of open_intervals filled, the rest for updates


def _time(*, nullable: bool = False, index: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable, index=index)


class Supplier(SQLModel, table=True):
    """A supplier, known by the owner_id the uptime API reports for their devices."""

    __tablename__ = "suppliers"
    owner_id: str = Field(primary_key=True, max_length=ID)
    first_seen_at: datetime = Field(sa_column=_time())


class Device(SQLModel, table=True):
    """A device known to the registry; its changing metadata lives in DeviceMetadata."""

    __tablename__ = "devices"
    device_id: str = Field(primary_key=True, max_length=ID)
    first_seen_at: datetime = Field(sa_column=_time())


class DeviceMetadata(SQLModel, table=True):
    """One version of a device's metadata, valid over [valid_from, valid_to).

    Versions are never overwritten: a change adds a row and closes the previous one; a
    reverted change stays, marked with who reverted it and when.
    """

    __tablename__ = "device_metadata"
    __table_args__ = (UniqueConstraint("device_id", "valid_from"),)
    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(max_length=ID, index=True, foreign_key="devices.device_id")
    owner_id: str = Field(max_length=ID, index=True, foreign_key="suppliers.owner_id")
    gpu_model: str = Field(max_length=ID)
    gpu_count: int = Field(sa_type=BigInteger)
    status: str = Field(max_length=40)
    registered_at: datetime = Field(sa_column=_time())
    valid_from: datetime = Field(sa_column=_time())
    valid_to: datetime | None = Field(default=None, sa_column=_time(nullable=True))
    actor: str = Field(max_length=ID, index=True)
    source: str = Field(max_length=ID)
    recorded_at: datetime = Field(sa_column=_time())
    # An admin's revert keeps the row (history is never overwritten) but takes it out of
    # force: its validity becomes empty and the version before it extends over it.
    reverted_at: datetime | None = Field(default=None, sa_column=_time(nullable=True))
    reverted_by: str | None = Field(default=None, max_length=ID)


class Heartbeat(SQLModel, table=True):
    """A raw heartbeat, one per (device_id, observed_at); times in UTC microseconds."""

    __tablename__ = "heartbeats"
    device_id: str = Field(primary_key=True, max_length=ID)
    observed_at: int = Field(primary_key=True, sa_type=BigInteger)
    boot_id: str = Field(max_length=ID)
    agent_version: str = Field(max_length=ID)
    received_at: int = Field(sa_type=BigInteger)  # when the engine stored it, for lateness


class OnlineInterval(SQLModel, table=True):
    """A maximal online interval [start, end) of a device, derived from heartbeats, other
    than the device's latest (that one is in `open_intervals`).

    `last_boot_id` and `last_agent_version` are NULL when equal to the first ones, as they
    are for most intervals (no restart or upgrade inside): a season holds ~45M of these
    rows, and the NULLs take them under 150 B each, index included (DESIGN 8)."""

    __tablename__ = "online_intervals"
    device_id: str = Field(primary_key=True, max_length=ID)
    start: int = Field(primary_key=True, sa_type=BigInteger)
    end: int = Field(sa_type=BigInteger)
    first_boot_id: str = Field(max_length=ID)
    first_agent_version: str = Field(max_length=ID)
    last_boot_id: str | None = Field(default=None, max_length=ID)
    last_agent_version: str | None = Field(default=None, max_length=ID)


class OpenInterval(SQLModel, table=True):
    """Each device's latest online interval, the one nearly every page extends: one row per
    device, updated in place (on PostgreSQL a HOT update, as no index covers what changes:
    the fill factor leaves room on the page), so a page of 10,000 devices neither adds nor
    deletes rows and the cost of a page does not grow with the intervals stored."""

    __tablename__ = "open_intervals"
    __table_args__ = ({"postgresql_with": {"fillfactor": OPEN_FILLFACTOR}},)
    device_id: str = Field(primary_key=True, max_length=ID)
    start: int = Field(sa_type=BigInteger)
    end: int = Field(sa_type=BigInteger)
    first_boot_id: str = Field(max_length=ID)
    first_agent_version: str = Field(max_length=ID)
    last_boot_id: str = Field(max_length=ID)
    last_agent_version: str = Field(max_length=ID)


class IngestCursor(SQLModel, table=True):
    """Where each stream of the uptime API was last read up to; moves with its data."""

    __tablename__ = "ingest_cursors"
    stream: str = Field(primary_key=True, max_length=40)
    cursor: str | None = Field(default=None, sa_type=Text)
    updated_at: datetime = Field(sa_column=_time())
    # the latest observed_at (UTC µs) the stream has stored: epochs close on it (DESIGN 10)
    watermark: int | None = Field(default=None, sa_type=BigInteger)
    # pages committed so far: the archive keys each page's write by the next one (DESIGN 8)
    pages: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})


class JobRun(SQLModel, table=True):
    """One execution of a job, scheduled or manual, with what it did or why it failed."""

    __tablename__ = "job_runs"
    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=80, index=True)
    trigger: str = Field(max_length=80)
    holder: str = Field(max_length=ID)
    started_at: datetime = Field(sa_column=_time(index=True))
    finished_at: datetime | None = Field(default=None, sa_column=_time(nullable=True))
    status: str = Field(max_length=20, index=True)
    pages: int = Field(default=0, sa_type=BigInteger)
    records_pulled: int = Field(default=0, sa_type=BigInteger)
    records_stored: int = Field(default=0, sa_type=BigInteger)
    records_quarantined: int = Field(default=0, sa_type=BigInteger)
    records_deleted: int = Field(default=0, sa_type=BigInteger)
    error: str | None = Field(default=None, sa_type=Text)
    # who computed a run's shards: "in process", "2 local processes", "dask tcp://... (N
    # workers)" (DESIGN 8); NULL for runs that compute nothing, and for runs before 0013
    computed_on: str | None = Field(default=None, max_length=ID)


class QuarantinedRecord(SQLModel, table=True):
    """Input refused at the door: the raw record, where it came from and why."""

    __tablename__ = "quarantined_records"
    id: int | None = Field(default=None, primary_key=True)
    stream: str = Field(max_length=40, index=True)
    source: str = Field(sa_type=Text)
    received_at: datetime = Field(sa_column=_time(index=True))
    raw: str = Field(sa_type=Text)
    reason: str = Field(sa_type=Text)


class AuditEntry(SQLModel, table=True):
    """Append-only record of admin actions and metadata changes (the database refuses edits).

    Entries form a hash chain: each `hash` covers the previous entry's hash and this
    entry's content, so an edited, removed or inserted entry breaks every hash after it
    (`rewards audit verify`).
    """

    __tablename__ = "audit_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=_time(index=True))
    actor: str = Field(max_length=ID)
    action: str = Field(max_length=80)
    subject: str = Field(max_length=ID, index=True)
    details: str = Field(sa_type=Text)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class AuditHead(SQLModel, table=True):
    """The newest audit hash and the number of entries: appenders lock this row, so the
    chain never forks, and a log cut short no longer ends where the head says."""

    __tablename__ = "audit_head"
    id: int = Field(primary_key=True)
    hash: str = Field(max_length=64)
    entries: int = Field(sa_type=BigInteger)


class Incident(SQLModel, table=True):
    """A declared or proposed incident window; only confirmed ones count (DESIGN 4.5)."""

    __tablename__ = "incidents"
    id: str = Field(primary_key=True, max_length=80)
    start: datetime = Field(sa_column=_time())
    end: datetime = Field(sa_column=_time())
    recovery_deadline_us: int = Field(sa_type=BigInteger)
    scope: str = Field(sa_type=Text)  # JSON: {"all": true} | {"device_ids": [...]} | ...
    status: str = Field(max_length=20, index=True)  # proposed, confirmed, dismissed
    source: str = Field(max_length=80)  # admin, detector:fleet-drop, detector:api-unreachable
    reason: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_column=_time())
    updated_at: datetime = Field(sa_column=_time())
    decided_by: str | None = Field(default=None, max_length=ID)


class Alert(SQLModel, table=True):
    """Something an admin must look at, e.g. a write surge; `blocked` keeps the actor from
    writing until an admin clears it."""

    __tablename__ = "alerts"
    id: int | None = Field(default=None, primary_key=True)
    raised_at: datetime = Field(sa_column=_time(index=True))
    kind: str = Field(max_length=40)
    route: str = Field(max_length=ID)
    actor: str = Field(max_length=ID, index=True)
    writes: int = Field(sa_type=BigInteger)
    threshold: float = Field(sa_type=Double)
    blocked: bool
    status: str = Field(max_length=20, index=True)  # open, cleared
    cleared_by: str | None = Field(default=None, max_length=ID)
    cleared_at: datetime | None = Field(default=None, sa_column=_time(nullable=True))


class Lease(SQLModel, table=True):
    """A named, expiring lock: the scheduler's leadership and each job's exclusive run."""

    __tablename__ = "leases"
    name: str = Field(primary_key=True, max_length=80)
    holder: str = Field(max_length=ID)
    acquired_at: datetime = Field(sa_column=_time())
    expires_at: datetime = Field(sa_column=_time())


class Snapshot(SQLModel, table=True):
    """A version of a season's rewards over frozen inputs (DESIGN 5).

    Drafts become published; publishing supersedes the previous one. The database refuses
    any other change, and the deletion of anything but a draft (triggers, revision 0003).
    """

    __tablename__ = "snapshots"
    __table_args__ = (
        UniqueConstraint("season", "version"),
        Index(  # at most one published snapshot per season, whatever the code does
            "ix_snapshots_one_published",
            "season",
            unique=True,
            sqlite_where=text("status = 'published'"),
            postgresql_where=text("status = 'published'"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    season: str = Field(max_length=80, index=True)
    version: int = Field(sa_type=BigInteger)
    status: str = Field(max_length=20)  # draft, published, superseded
    epoch_first: int = Field(sa_type=BigInteger)
    epoch_last: int = Field(sa_type=BigInteger)
    policy: str = Field(sa_type=Text)  # the canonical policy JSON the rows were computed with
    policy_hash: str = Field(max_length=64)
    input_fingerprint: str = Field(max_length=64)
    code_version: str = Field(max_length=ID)
    trigger: str = Field(max_length=20)  # scheduled or manual
    triggered_by: str = Field(max_length=ID)
    reason: str = Field(sa_type=Text)
    supersedes_id: int | None = Field(default=None, foreign_key="snapshots.id")
    device_epoch_rows: int = Field(sa_type=BigInteger)
    devices: int = Field(sa_type=BigInteger)
    suppliers: int = Field(sa_type=BigInteger)
    eligible_device_epochs: int = Field(sa_type=BigInteger)
    total_pool: int = Field(sa_type=BigInteger)
    total_paid: int = Field(sa_type=BigInteger)
    total_unassigned: int = Field(sa_type=BigInteger)
    content_hash: str = Field(max_length=64)
    merkle_root: str = Field(max_length=64)
    # what a Merkle leaf names: 2, the owner's commitment (DESIGN 9); 1, the owner_id
    leaf_format: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    job_run_id: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = Field(sa_column=_time())
    published_at: datetime | None = Field(default=None, sa_column=_time(nullable=True))
    published_by: str | None = Field(default=None, max_length=ID)
    # the audit log's head (entries, hash) after this snapshot's run and after its
    # publication were audited: a log later cut short or rewound is caught (DESIGN 9)
    audit_entries: int | None = Field(default=None, sa_type=BigInteger)
    audit_hash: str | None = Field(default=None, max_length=64)
    published_audit_entries: int | None = Field(default=None, sa_type=BigInteger)
    published_audit_hash: str | None = Field(default=None, max_length=64)


def _snapshot_key() -> Column[int]:
    return Column(Integer, ForeignKey("snapshots.id"), primary_key=True)


class SnapshotPart(SQLModel, table=True):
    """A slice of a snapshot's device-epoch rows, in canonical order, as Parquet.

    A 600,000-device season has 18 million device-epochs: stored as a few dozen immutable
    Parquet parts they are written and read back in seconds where one table row each took
    minutes. Each part carries its SHA-256 (checked on every read) and its first and last
    device; the snapshot's content hash covers the canonical CSV of all of them.
    """

    __tablename__ = "snapshot_parts"
    snapshot_id: int = Field(sa_column=_snapshot_key())
    part: int = Field(primary_key=True, sa_type=BigInteger)
    rows: int = Field(sa_type=BigInteger)
    first_device_id: str = Field(max_length=ID)
    last_device_id: str = Field(max_length=ID)
    sha256: str = Field(max_length=64)
    data: bytes = Field(sa_type=LargeBinary)


class SnapshotPayout(SQLModel, table=True):
    """A supplier's payout in a snapshot: one Merkle leaf."""

    __tablename__ = "snapshot_payouts"
    snapshot_id: int = Field(sa_column=_snapshot_key())
    owner_id: str = Field(primary_key=True, max_length=ID)
    reward: int = Field(sa_type=BigInteger)
    devices: int = Field(sa_type=BigInteger)
    eligible_device_epochs: int = Field(sa_type=BigInteger)
    # hex SHA-256(salt || owner_id): what the leaf names (leaf format 2); NULL before it
    commitment: str | None = Field(default=None, max_length=64)


class SnapshotEpoch(SQLModel, table=True):
    """How one epoch's pool was spent in a snapshot."""

    __tablename__ = "snapshot_epochs"
    snapshot_id: int = Field(sa_column=_snapshot_key())
    epoch: int = Field(primary_key=True, sa_type=BigInteger)
    pool: int = Field(sa_type=BigInteger)
    paid: int = Field(sa_type=BigInteger)
    unassigned: int = Field(sa_type=BigInteger)
    eligible_devices: int = Field(sa_type=BigInteger)


class EligibilityView(SQLModel, table=True):
    """A computed eligibility view of a season (see rewards.core.eligibility_view): what
    the API answers suppliers from. Derived data: rebuilt by a job, old ones deleted."""

    __tablename__ = "eligibility_views"
    id: int | None = Field(default=None, primary_key=True)
    season: str = Field(max_length=80, index=True)
    as_of: datetime = Field(sa_column=_time())
    epochs: int = Field(sa_type=BigInteger)  # epochs 0..epochs-1 have begun by as_of
    input_fingerprint: str = Field(max_length=64)
    policy_hash: str = Field(max_length=64)
    code_version: str = Field(max_length=ID)
    rows: int = Field(sa_type=BigInteger)
    owners: int = Field(sa_type=BigInteger)
    job_run_id: int | None = Field(default=None, sa_type=BigInteger)
    computed_at: datetime = Field(sa_column=_time())


class EligibilityDocument(SQLModel, table=True):
    """One supplier's device-epochs in a view, as the JSON the API sends (zlib-compressed),
    with the SHA-256 of the stored bytes (checked on read)."""

    __tablename__ = "eligibility_documents"
    view_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("eligibility_views.id", ondelete="CASCADE"), primary_key=True
        )
    )
    owner_id: str = Field(primary_key=True, max_length=ID)
    rows: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    document: bytes = Field(sa_type=LargeBinary)


class EligibilityDeviceDocument(SQLModel, table=True):
    """A device's rows in a view while a supplier owned it, for the pages: `states`, a
    letter per begun epoch for the grid (core.GRID_LETTERS), and `document`, its JSON rows
    (zlib; SHA-256 checked on read): a page never parses the supplier's whole document."""

    __tablename__ = "eligibility_device_documents"
    view_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("eligibility_views.id", ondelete="CASCADE"), primary_key=True
        )
    )
    owner_id: str = Field(primary_key=True, max_length=ID)
    device_id: str = Field(primary_key=True, max_length=ID)
    states: str = Field(sa_type=Text)
    sha256: str = Field(max_length=64)
    document: bytes = Field(sa_type=LargeBinary)


class WebSession(SQLModel, table=True):
    """A signed-in browser's session (issue 12): the cookie holds a random id whose SHA-256
    is kept here with the SHA-256 of the access token it carries. Signing out sets
    `revoked_at`: the cookie no longer opens pages and the token no longer passes the API,
    in every worker process. A row can go once its token has expired (`expires_at`)."""

    __tablename__ = "web_sessions"
    id_hash: str = Field(primary_key=True, max_length=64)
    subject: str = Field(max_length=ID)
    token_hash: str = Field(max_length=64, index=True)
    created_at: datetime = Field(sa_column=_time())
    expires_at: datetime = Field(sa_column=_time(index=True))
    revoked_at: datetime | None = Field(default=None, sa_column=_time(nullable=True))


__all__ = [
    "Alert",
    "AuditEntry",
    "AuditHead",
    "Device",
    "DeviceMetadata",
    "EligibilityDocument",
    "EligibilityView",
    "Heartbeat",
    "Incident",
    "IngestCursor",
    "JobRun",
    "Lease",
    "OnlineInterval",
    "OpenInterval",
    "QuarantinedRecord",
    "Snapshot",
    "SnapshotEpoch",
    "SnapshotPart",
    "SnapshotPayout",
    "String",
    "Supplier",
    "WebSession",
    "metadata",
]
