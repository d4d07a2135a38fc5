"""`rewards incidents`: declare, detect, list, edit, confirm and dismiss incidents.

The incidents service is imported inside each command, so that `rewards --help` starts
fast."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer

from rewards.cli._shell import Actor, fail, out, shell, utc_now

incidents_app = typer.Typer(no_args_is_help=True, help="Incidents: declare, detect, decide.")


def _moment(value: str, name: str) -> datetime:
    from rewards.uptime.records import parse_time

    parsed = parse_time(name, value)
    if isinstance(parsed, str):
        fail(f"--{name}: {parsed.removeprefix(f'field {name!r} ')}")
    return parsed


@incidents_app.command("declare")
def incidents_declare(
    incident_id: Annotated[str, typer.Argument(help="A short unique id.")],
    start: Annotated[str, typer.Option(help="RFC 3339 start, e.g. 2024-04-25T08:05:00Z.")],
    end: Annotated[str, typer.Option(help="RFC 3339 end.")],
    by: Actor,
    deadline: Annotated[
        str,
        typer.Option(
            help="Recovery deadline after the end, e.g. 48h (required: 0s gives no recovery "
            "credit at all)."
        ),
    ],
    scope: Annotated[
        str,
        typer.Option(
            help='JSON scope: {"all": true}, {"device_ids": [...]} or {"agent_version_below": "X"}.'
        ),
    ] = '{"all": true}',
    reason: str = "",
) -> None:
    """Declare a confirmed incident."""
    from rewards.core import IncidentScope, parse_duration_us
    from rewards.services.incidents import IncidentError, declare

    try:
        scope_value = IncidentScope.from_json(scope)
        recovery = timedelta(microseconds=parse_duration_us(deadline))
    except ValueError as exc:  # a ScopeError or a bad duration
        fail(f"--scope or --deadline: {exc}")
    sh = shell()
    try:
        declare(
            sh.engine(),
            incident_id=incident_id,
            start=_moment(start, "start"),
            end=_moment(end, "end"),
            recovery_deadline=recovery,
            scope=scope_value,
            reason=reason,
            by=by,
            now=utc_now(),
            years=sh.settings.timestamp_years,
        )
    except IncidentError as exc:
        fail(str(exc))
    out.print(f"incident {incident_id} declared and confirmed")


@incidents_app.command("detect")
def incidents_detect() -> None:
    """Propose incidents from fleet drops and failed pulls (an admin confirms them)."""
    from rewards.services.incidents import detect

    sh = shell()
    for incident in detect(sh.engine(), sh.policy, now=utc_now(), settings=sh.settings.detector):
        out.print(
            f"proposed {incident.id}: {incident.start:%Y-%m-%d %H:%MZ} to "
            f"{incident.end:%Y-%m-%d %H:%MZ} ({incident.reason})",
            highlight=False,
        )


STATUSES = ("proposed", "confirmed", "dismissed")


def _status(value: str | None) -> str | None:
    if value is not None and value not in STATUSES:
        raise typer.BadParameter(f"{value!r}: expected one of {', '.join(STATUSES)}")
    return value


@incidents_app.command("list")
def incidents_list(
    status: Annotated[
        str | None,
        typer.Option(help="proposed, confirmed or dismissed.", callback=_status),
    ] = None,
) -> None:
    """Incidents, oldest first."""
    from rewards.services.incidents import list_incidents

    for i in list_incidents(shell().engine(), status):
        fields = (
            i.id,
            i.status,
            f"{i.start:%Y-%m-%dT%H:%M:%SZ}",
            f"{i.end:%Y-%m-%dT%H:%M:%SZ}",
            f"{i.recovery_deadline_us // 1_000_000}s",
            i.scope,
            i.source,
            i.reason,
        )
        typer.echo("\t".join(fields))


def _decide(incident_id: str, status: str, by: str) -> None:
    from rewards.services.incidents import IncidentError, decide

    try:
        decide(shell().engine(), incident_id, status=status, by=by, now=utc_now())
    except IncidentError as exc:
        fail(str(exc))
    out.print(f"incident {incident_id} {status}")


@incidents_app.command("edit")
def incidents_edit(
    incident_id: str,
    by: Actor,
    start: Annotated[str | None, typer.Option(help="New RFC 3339 start.")] = None,
    end: Annotated[str | None, typer.Option(help="New RFC 3339 end.")] = None,
    deadline: Annotated[str | None, typer.Option(help="New recovery deadline, e.g. 48h.")] = None,
    scope: Annotated[str | None, typer.Option(help="New JSON scope.")] = None,
) -> None:
    """Edit an incident's window, deadline or scope; it keeps its status (audited)."""
    from rewards.core import IncidentScope, parse_duration_us
    from rewards.services.incidents import IncidentError, decide, list_incidents

    changes: dict[str, object] = {}
    try:
        if start:
            changes["start"] = _moment(start, "start")
        if end:
            changes["end"] = _moment(end, "end")
        if deadline:
            changes["recovery_deadline"] = timedelta(microseconds=parse_duration_us(deadline))
        if scope:
            changes["scope"] = IncidentScope.from_json(scope)
    except ValueError as exc:  # a ScopeError or a bad duration
        fail(f"--scope or --deadline: {exc}")
    if not changes:
        fail("nothing to change: give --start, --end, --deadline or --scope")
    sh = shell()
    engine = sh.engine()
    current = {i.id: i.status for i in list_incidents(engine)}
    if incident_id not in current:
        fail(f"no incident {incident_id!r}")
    try:
        decide(
            engine,
            incident_id,
            status=current[incident_id],
            by=by,
            now=utc_now(),
            changes=changes,
            years=sh.settings.timestamp_years,
        )
    except IncidentError as exc:
        fail(str(exc))
    out.print(f"incident {incident_id} edited")


@incidents_app.command("confirm")
def incidents_confirm(incident_id: str, by: Actor) -> None:
    """Confirm a proposed incident: from now on it credits downtime."""
    _decide(incident_id, "confirmed", by)


@incidents_app.command("dismiss")
def incidents_dismiss(incident_id: str, by: Actor) -> None:
    """Dismiss an incident: it never counts."""
    _decide(incident_id, "dismissed", by)
