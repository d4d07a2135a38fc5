"""The API's explicit input and output schemas (no mass assignment: every field named).

Inputs are strict (issue 12, item 15): an integer is a JSON integer, a boolean is true or
false, never "3600", 1 or "yes"; unknown fields and NaN or infinite numbers are refused. A
time is an RFC 3339 string with a UTC offset, never a number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from rewards.core import IDENTIFIER_PATTERN, IncidentScope

# Device ids, owner ids and actors are identifiers: IDENTIFIER_PATTERN (DESIGN 10) is their
# one rule. An incident id is not one (admins and the detector name incidents; no feed or
# token does), so it keeps its own rule here; snapshot refs are REF_PATTERN (deps.py).
INCIDENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$"
STRICT_INPUT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
MAX_SCOPE_DEVICES = 10_000  # device ids an incident scope may name (the body cap fits them)


def _text_only(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("expected an RFC 3339 time as a string, e.g. 2024-04-25T08:05:00Z")
    return value


# FastAPI validates bodies in pydantic's python mode, where a strict datetime would refuse
# every string: parse the string (lax) but let nothing but a string in
Timestamp = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_text_only)]


class DeviceOut(BaseModel):
    device_id: str
    gpu_model: str
    gpu_count: int
    status: str
    last_seen: datetime | None


class PublicDeviceOut(BaseModel):
    """What anyone may know about a device: never its owner."""

    device_id: str
    gpu_model: str
    status: str
    last_seen: datetime | None


class DevicePage(BaseModel):
    devices: list[DeviceOut]
    next_after: str | None = Field(description="Pass as `after` for the next page.")


class MeOut(BaseModel):
    subject: str
    roles: list[str]


class SnapshotOut(BaseModel):
    snapshot: str
    season: str
    version: int
    status: str
    epochs: list[int]
    total_paid: int
    suppliers: int
    content_hash: str
    merkle_root: str
    created_at: datetime
    published_at: datetime | None


class ProofStepOut(BaseModel):
    side: str
    sibling: str


class RewardOut(BaseModel):
    """A payout with its proof. In proof format 2 (`format`), `leaf[0]` is the commitment
    SHA-256(salt || owner_id) and `salt` (hex) is this owner's secret for the season: keep
    it private, it is what shows the public leaf is yours. Without `format`: format 1, the
    leaf names the owner_id."""

    format: str | None = None
    snapshot: str
    owner_id: str
    salt: str | None = None
    amount: int
    amount_decimal: str
    leaf: list[Any]
    proof: list[ProofStepOut]
    root: str


class IncidentOut(BaseModel):
    id: str
    start: datetime
    end: datetime
    recovery_deadline_s: int
    scope: str
    status: str
    source: str
    reason: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    """What /readyz checks (DESIGN 10)."""

    status: str  # ok, not ready
    database: str  # ok, unreachable
    migrations: str  # at head, behind (at R, head H), unknown
    identity_provider: str  # not configured, fresh, stale, expired, never fetched


class AlertOut(BaseModel):
    id: int
    raised_at: datetime
    kind: str
    route: str
    actor: str
    writes: int
    threshold: float
    blocked: bool
    status: str
    cleared_by: str | None
    cleared_at: datetime | None


class SnapshotRunIn(BaseModel):
    """A rerun an admin asks for: why (recorded), and optionally which epochs."""

    model_config = STRICT_INPUT
    reason: str = Field(min_length=1, max_length=500)
    epochs: str | None = Field(default=None, pattern=r"^\d{1,4}(:\d{1,4})?$")
    force: bool = False


class PublishIn(BaseModel):
    """Publishing a version older than the published one (a rollback, DESIGN 9) needs both."""

    model_config = STRICT_INPUT
    override_rollback: bool = False
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class SnapshotRunOut(BaseModel):
    snapshot: SnapshotOut
    created: bool


class DiffOut(BaseModel):
    before: str
    after: str
    device_epochs_changed: int
    devices_changed: int
    device_epochs_regained: int
    device_epochs_lost: int
    suppliers_changed: int
    moved: int
    largest: list[dict[str, Any]]


class AdjustmentOut(BaseModel):
    owner_id: str
    paid: int
    due: int
    adjustment: int
    direction: str


class JobRunOut(BaseModel):
    id: int
    job_id: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    records_pulled: int
    records_stored: int
    error: str | None
    computed_on: str | None = Field(
        default=None,
        description="Who computed a snapshot or view run's shards: 'in process', "
        "'2 local processes' or 'dask tcp://host:8786 (N workers)'.",
    )


class DeviceEpochOut(BaseModel):
    """One device-epoch of yours: what counted, the outcome, and why, in words."""

    device_id: str
    epoch: int
    epoch_start: datetime
    in_progress: bool = Field(description="The epoch had not ended when the view was built.")
    online_s: float
    bridged_s: float
    credited_s: float
    uptime_ratio: float
    eligible: bool
    reason: str = Field(description="SUSPENDED, ELIGIBLE, NO_HEARTBEATS or BELOW_MIN_UPTIME")
    shortfall_s: float
    bridges_used: int
    bridges_denied: int
    longest_uncounted_gap_s: float
    crediting_incidents: list[str]
    explanation: str


class EligibilityPage(BaseModel):
    season: str
    as_of: datetime = Field(description="The moment the view was computed for.")
    device_epochs: list[DeviceEpochOut]
    next_after: str | None = Field(description="Pass as `after` for the next page.")


class ScopeIn(BaseModel):
    """Which devices an incident covers: exactly one of the three (IncidentScope's rule,
    checked here so a bad scope is refused with the schema errors)."""

    model_config = STRICT_INPUT
    all: bool | None = Field(default=None, description="true: every device")
    device_ids: list[Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=MAX_SCOPE_DEVICES
    )
    agent_version_below: str | None = Field(
        default=None, pattern=r"^[0-9A-Za-z.+-]{1,40}$", description="e.g. 0.10"
    )

    @model_validator(mode="after")
    def _one_scope(self) -> ScopeIn:
        self.scope()  # a ScopeError is a ValueError: pydantic reports it as a 422
        return self

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    def scope(self) -> IncidentScope:
        """The value object of the scope (DESIGN 4.5)."""
        return IncidentScope.parse(self.as_dict())


class IncidentIn(BaseModel):
    """An incident an admin declares (confirmed at once)."""

    model_config = STRICT_INPUT
    id: str = Field(pattern=INCIDENT_ID_PATTERN)
    start: Timestamp
    end: Timestamp
    recovery_deadline_s: int = Field(ge=0, le=30 * 86_400)
    scope: ScopeIn
    reason: str = Field(min_length=1, max_length=500)


class IncidentEditIn(BaseModel):
    """Fields of an incident to change; the others stay as they are."""

    model_config = STRICT_INPUT
    start: Timestamp | None = None
    end: Timestamp | None = None
    recovery_deadline_s: int | None = Field(default=None, ge=0, le=30 * 86_400)
    scope: ScopeIn | None = None
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class MetadataVersionOut(BaseModel):
    """One version of a device's metadata: what it said, from when, who wrote it, and
    whether an admin reverted it."""

    id: int
    device_id: str
    owner_id: str
    gpu_model: str
    gpu_count: int
    status: str
    valid_from: datetime
    valid_to: datetime | None
    actor: str
    source: str
    recorded_at: datetime
    reverted_at: datetime | None
    reverted_by: str | None


class MetadataPage(BaseModel):
    versions: list[MetadataVersionOut]
    next_after: int | None = Field(description="Pass as `after` for the next page.")


class RevertIn(BaseModel):
    """Revert every metadata change `actor` made with valid_from in [since, until)."""

    model_config = STRICT_INPUT
    actor: str = Field(pattern=IDENTIFIER_PATTERN)
    since: Timestamp
    until: Timestamp
    reason: str = Field(min_length=1, max_length=500)


class RevertOut(BaseModel):
    reverted: int
    devices: int
    versions: list[MetadataVersionOut] = Field(description="The first 500 reverted.")
