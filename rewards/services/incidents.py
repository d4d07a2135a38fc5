"""Use cases for incidents: declare, propose (outage detector), confirm, edit, dismiss.

Every decision is written to the audit log with who made it. Only confirmed incidents
count; declaring or confirming one never lowers anyone's counted time (DESIGN 4.5).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from rewards.core import (
    DEFAULT_YEARS,
    DetectorSettings,
    IncidentScope,
    Outage,
    ScopeError,
    SeasonPolicy,
    YearWindow,
    fleet_drops,
    from_us,
    unreachable_periods,
)
from rewards.db import audit
from rewards.db.devices import unknown_devices
from rewards.db.engine import unit_of_work
from rewards.db.incidents import incidents, job_runs_frame
from rewards.db.interval_reads import last_interval_end
from rewards.db.tables import Incident
from rewards.services.errors import ServiceError
from rewards.services.intervals import online_counts
from rewards.services.records import IncidentRecord

INCIDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,79}")


class IncidentError(ServiceError, ValueError):
    """An incident request cannot be done; the message says why."""


class IncidentExists(IncidentError):
    """An incident with that id is already on record."""

    kind = "conflict"


class UnknownIncident(IncidentError):
    """No incident has that id."""

    kind = "not-found"


class UnknownDevices(IncidentError):
    """A scope names devices the registry has never reported (`device_ids`, sorted)."""

    def __init__(self, device_ids: list[str]) -> None:
        shown = ", ".join(device_ids[:10]) + (" ..." if len(device_ids) > 10 else "")
        super().__init__(f"the scope names {len(device_ids)} unknown device(s): {shown}")
        self.device_ids = device_ids

    def extensions(self) -> dict[str, Any]:
        return {"unknown_device_ids": self.device_ids}


def check_window(start: datetime, end: datetime, years: YearWindow) -> None:
    """An incident's window: end after start, both within `years` (inclusive)."""
    if end <= start:
        raise IncidentError("end must be after start")
    first, last = years.first, years.last
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    # compared, not converted: a year-1 time with an offset cannot be moved to UTC
    if start < datetime(first, 1, 1, tzinfo=UTC) or (
        last < 9999 and end > datetime(last + 1, 1, 1, tzinfo=UTC)
    ):
        raise IncidentError(f"the window must lie within the years {first} to {last} (UTC)")


def check_devices(session: Session, scope: IncidentScope) -> None:
    """A device_ids scope names only devices the registry knows (UnknownDevices)."""
    if scope.device_ids is not None:
        unknown = unknown_devices(session, list(scope.device_ids))
        if unknown:
            raise UnknownDevices(unknown)


def _scope(scope: IncidentScope | dict[str, Any]) -> IncidentScope:
    """The scope of a request (IncidentScope.parse of its JSON object), or IncidentError."""
    if isinstance(scope, IncidentScope):
        return scope
    try:
        return IncidentScope.parse(scope)
    except ScopeError as exc:
        raise IncidentError(f"scope: {exc}") from None


def declare(
    engine: Engine,
    *,
    incident_id: str,
    start: datetime,
    end: datetime,
    recovery_deadline: timedelta,
    scope: IncidentScope | dict[str, Any],
    reason: str,
    by: str,
    now: datetime,
    years: YearWindow = DEFAULT_YEARS,
) -> IncidentRecord:
    """An admin declares a confirmed incident: its window within `years`, its scope naming
    only known devices."""
    if not INCIDENT_ID.fullmatch(incident_id):
        raise IncidentError(
            f"incident id {incident_id!r}: use 1-80 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    check_window(start, end, years)
    if recovery_deadline < timedelta(0):
        raise IncidentError("recovery_deadline must not be negative")
    scope = _scope(scope)
    incident = Incident(
        id=incident_id,
        start=start,
        end=end,
        recovery_deadline_us=recovery_deadline // timedelta(microseconds=1),
        scope=scope.to_json(),
        status="confirmed",
        source="admin",
        reason=reason,
        created_at=now,
        updated_at=now,
        decided_by=by,
    )
    with unit_of_work(engine) as session:
        if session.get(Incident, incident_id) is not None:
            raise IncidentExists(f"incident {incident_id!r} already exists")
        check_devices(session, scope)
        session.add(incident)
        audit.append(
            session,
            now=now,
            actor=by,
            action="incident.declare",
            subject=incident_id,
            details={"start": start, "end": end, "scope": scope.as_dict(), "reason": reason},
        )
    return IncidentRecord.of(incident)


def decide(
    engine: Engine,
    incident_id: str,
    *,
    status: str | None,
    by: str,
    now: datetime,
    changes: dict[str, Any] | None = None,
    years: YearWindow = DEFAULT_YEARS,
) -> IncidentRecord:
    """Confirm, dismiss or edit an incident (with `changes`; status None keeps it), audited.
    A changed window must lie within `years`; a changed scope may name only known devices."""
    if status not in (None, "confirmed", "dismissed", "proposed"):
        raise IncidentError(f"unknown status {status!r}")
    with unit_of_work(engine) as session:
        incident = session.get(Incident, incident_id)
        if incident is None:
            raise UnknownIncident(f"no incident {incident_id!r}")
        before = {
            "status": incident.status,
            "start": incident.start,
            "end": incident.end,
            "recovery_deadline_us": incident.recovery_deadline_us,
            "scope": incident.scope,
        }
        scope = _scope(changes["scope"]) if changes and "scope" in changes else None
        if changes and scope is not None:
            changes = {**changes, "scope": scope.as_dict()}  # the audit log stores JSON
        for key, value in (changes or {}).items():
            setattr(incident, *stored_value(key, value))
        if incident.end <= incident.start:
            raise IncidentError("end must be after start")
        if changes and ("start" in changes or "end" in changes):
            check_window(incident.start, incident.end, years)
        if scope is not None:
            check_devices(session, scope)
        status = status or incident.status
        incident.status, incident.decided_by, incident.updated_at = status, by, now
        session.add(incident)
        action = (
            "incident.edit"
            if before["status"] == status
            else {
                "confirmed": "incident.confirm",
                "dismissed": "incident.dismiss",
                "proposed": "incident.unconfirm"
                if before["status"] == "confirmed"
                else "incident.reopen",
            }[status]
        )
        audit.append(
            session,
            now=now,
            actor=by,
            action=action,
            subject=incident_id,
            details={"before": before, "changes": changes or {}},
        )
    return IncidentRecord.of(incident)


def stored_value(key: str, value: Any) -> tuple[str, Any]:
    """The column and stored value of an edit request's field."""
    if key == "scope":
        return key, _scope(value).to_json()
    if key == "recovery_deadline":
        return "recovery_deadline_us", value // timedelta(microseconds=1)
    if key in ("start", "end", "reason"):
        return key, value
    raise IncidentError(f"field {key!r} cannot be edited")


def find_incident(engine: Engine, incident_id: str) -> IncidentRecord | None:
    """One incident by id."""
    with unit_of_work(engine) as session:
        found = session.get(Incident, incident_id)
        return IncidentRecord.of(found) if found is not None else None


def list_incidents(engine: Engine, status: str | None = None) -> list[IncidentRecord]:
    """Incidents, oldest first."""
    with unit_of_work(engine) as session:
        return [IncidentRecord.of(i) for i in incidents(session, status)]


def _proposal_id(outage: Outage) -> str:
    return f"auto-{outage.kind}-{outage.start:%Y%m%dT%H%MZ}"


def detect(
    engine: Engine,
    policy: SeasonPolicy,
    *,
    now: datetime,
    settings: DetectorSettings,
    job_id: str = "ingest-heartbeats",
) -> list[IncidentRecord]:
    """Propose incidents from fleet drops and from failed pulls; returns the new or updated
    proposals. Decided incidents are never touched; an open proposal gets its end updated."""
    # Counts are only known up to the last heartbeat seen: past it every device looks
    # offline, which is the end of the data, not an outage. The database adds up the
    # intervals' starts and ends per instant; only those tallies leave it.
    until = min(now, policy.end)
    with unit_of_work(engine) as session:
        last = last_interval_end(session.connection())
        if last is not None:
            until = min(until, from_us(last) - timedelta(microseconds=policy.heartbeat_period_us))
        counts = online_counts(
            session.connection(), start=policy.start, end=until, step=settings.step
        )
        runs = job_runs_frame(session, job_id, policy.start)
    outages = fleet_drops(
        counts,
        drop_share=settings.drop_share,
        window=settings.window,
        recover_share=settings.recover_share,
    )
    outages += unreachable_periods(runs)
    proposed = []
    with unit_of_work(engine) as session:
        for outage in outages:
            incident_id = _proposal_id(outage)
            existing = session.get(Incident, incident_id)
            end = outage.end or until
            if existing is not None:
                if existing.status != "proposed" or existing.end == end:
                    continue
                existing.end, existing.reason, existing.updated_at = end, outage.detail, now
                session.add(existing)
                proposed.append(existing)
                continue
            deadline = settings.recovery_deadline if outage.kind == "fleet-drop" else timedelta(0)
            incident = Incident(
                id=incident_id,
                start=outage.start,
                end=end,
                recovery_deadline_us=deadline // timedelta(microseconds=1),
                scope=IncidentScope.every_device().to_json(),
                status="proposed",
                source=f"detector:{outage.kind}",
                reason=outage.detail,
                created_at=now,
                updated_at=now,
            )
            session.add(incident)
            audit.append(
                session,
                now=now,
                actor="outage-detector",
                action="incident.propose",
                subject=incident_id,
                details={"start": outage.start, "end": end, "detail": outage.detail},
            )
            proposed.append(incident)
    return [IncidentRecord.of(i) for i in proposed]
