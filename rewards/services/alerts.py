"""Use cases for alerts: raise (stored and audited), list, clear, and who is blocked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from rewards.db import alerts as store
from rewards.db import audit
from rewards.db.engine import unit_of_work
from rewards.db.tables import Alert
from rewards.services.errors import ServiceError
from rewards.services.records import AlertRecord


class AlertError(ServiceError, ValueError):
    """An alert request cannot be done; the message says why."""

    kind = "conflict"


def raise_alert(
    engine: Engine,
    *,
    kind: str,
    route: str,
    actor: str,
    writes: int,
    threshold: float,
    block: bool,
    now: datetime,
    raised_by: str = "write-surge-detector",
) -> AlertRecord:
    """Store an open alert (audited as `raised_by`); with `block`, `actor` may not write
    until cleared."""
    alert = Alert(
        raised_at=now,
        kind=kind,
        route=route,
        actor=actor,
        writes=writes,
        threshold=threshold,
        blocked=block,
        status="open",
    )
    with unit_of_work(engine) as session:
        session.add(alert)
        session.flush()
        audit.append(
            session,
            now=now,
            actor=raised_by,
            action="alert.raise",
            subject=actor,
            details={"alert": alert.id, "kind": kind, "route": route, "writes": writes,
                     "threshold": threshold, "blocked": block},
        )  # fmt: skip
    return AlertRecord.of(alert)


def blocked_actors(engine: Engine) -> set[str]:
    """Actors with an open, blocking alert."""
    with unit_of_work(engine) as session:
        return store.blocked_actors(session)


def list_alerts(
    engine: Engine,
    status: str | None = None,
    limit: int = 100,
    *,
    actor: str | None = None,
    before_id: int | None = None,
) -> list[AlertRecord]:
    """Alerts, newest first (`before_id`: the page after the one that ended there)."""
    with unit_of_work(engine) as session:
        found = store.alerts(session, status=status, limit=limit, actor=actor, before_id=before_id)
        return [AlertRecord.of(a) for a in found]


def clear(engine: Engine, alert_id: int, *, by: str, now: datetime) -> AlertRecord:
    """Close an alert (and lift its block); an actor cannot clear an alert about itself."""
    with unit_of_work(engine) as session:
        alert = session.get(Alert, alert_id)
        if alert is None or alert.status != "open":
            raise AlertError(f"no open alert {alert_id}")
        if alert.actor == by:
            raise AlertError("an alert about you must be cleared by another admin")
        alert.status, alert.cleared_by, alert.cleared_at = "cleared", by, now
        session.add(alert)
        audit.append(
            session,
            now=now,
            actor=by,
            action="alert.clear",
            subject=alert.actor,
            details={"alert": alert_id},
        )
    return AlertRecord.of(alert)
