"""`rewards incidents`: declare, detect, list, show, edit, confirm, un-confirm and dismiss
incidents, and preview what a decision would change.

The incidents service is imported inside each command, so that `rewards --help` starts
fast."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from rewards.cli._shell import (
    Actor,
    AsJson,
    amounts,
    fail,
    out,
    plain,
    print_json,
    shell,
    utc_now,
    with_amounts,
)

if TYPE_CHECKING:
    from rewards.services.records import IncidentRecord

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
    as_json: AsJson = False,
) -> None:
    """Incidents, oldest first."""
    from rewards.services.incidents import list_incidents

    found = list_incidents(shell().engine(), status)
    if as_json:
        print_json([_incident_json(i) for i in found])
        return
    for i in found:
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


def _incident_json(incident: IncidentRecord) -> dict[str, Any]:
    """An incident as `--json` shows it: what it records, its scope as a JSON object."""
    return {**plain(incident), "scope": json.loads(incident.scope)}


@incidents_app.command("show")
def incidents_show(incident_id: str, as_json: AsJson = False) -> None:
    """Everything an incident records."""
    from rewards.services.incidents import list_incidents

    found = {i.id: i for i in list_incidents(shell().engine())}
    if incident_id not in found:
        fail(f"no incident {incident_id!r}")
    i = found[incident_id]
    if as_json:
        print_json(_incident_json(i))
        return
    fields = {
        "incident": i.id,
        "status": i.status,
        "window": f"{i.start:%Y-%m-%dT%H:%M:%SZ} to {i.end:%Y-%m-%dT%H:%M:%SZ}",
        "recovery deadline": f"{i.recovery_deadline_us // 1_000_000}s after the end",
        "scope": i.scope,
        "source": i.source,
        "reason": i.reason,
        "created": f"{i.created_at:%Y-%m-%dT%H:%M:%SZ}",
        "updated": f"{i.updated_at:%Y-%m-%dT%H:%M:%SZ}",
        "decided by": i.decided_by or "",
    }
    for key, value in fields.items():
        out.print(f"{key + ':':19}{value}", highlight=False)


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


@incidents_app.command("unconfirm")
def incidents_unconfirm(incident_id: str, by: Actor) -> None:
    """Take a confirmed incident back to proposed: from the next run it no longer counts."""
    _decide(incident_id, "proposed", by)


@incidents_app.command("impact")
def incidents_impact(
    incident_id: str,
    change: Annotated[str, typer.Option(help="confirm, unconfirm or edit.")] = "confirm",
    deadline: Annotated[str | None, typer.Option(help="For edit: the new deadline.")] = None,
    as_json: AsJson = False,
) -> None:
    """What confirming, un-confirming or editing (the deadline) an incident would change,
    per day, before doing it: nothing is written."""
    from rewards.core import parse_duration_us
    from rewards.services.archive import open_archive
    from rewards.services.impact import impact
    from rewards.services.incidents import IncidentError

    sh = shell()
    edits = None
    if deadline:
        try:
            edits = {"recovery_deadline": timedelta(microseconds=parse_duration_us(deadline))}
        except ValueError as exc:
            fail(f"--deadline: {exc}")
    try:
        seen = impact(
            sh.engine(), sh.policy, incident_id, change, edits=edits,
            archive=open_archive(sh.settings.archive_url), years=sh.settings.timestamp_years,
        )  # fmt: skip
    except IncidentError as exc:
        fail(str(exc))
    decimals, s = sh.policy.token_decimals, seen.summary
    days = seen.per_day
    if as_json:
        print_json(
            {"incident_id": incident_id, "change": change,
             "device_epochs_regained": s.device_epochs_regained,
             "device_epochs_lost": s.device_epochs_lost, "devices_changed": s.devices_changed,
             "suppliers_changed": s.suppliers_changed, **amounts(decimals, moved=s.moved),
             "per_day": with_amounts(days, decimals, ["moved"])}
        )  # fmt: skip
        return
    table = Table("day (UTC)", "eligible now", "eligible after", "regained", "lost", "moved")
    for d in with_amounts(days, decimals, ["moved"]):
        table.add_row(
            d["day"], f"{d['eligible_before']:,}", f"{d['eligible_after']:,}",
            f"{d['regained']:,}", f"{d['lost']:,}", d["moved_decimal"],
        )  # fmt: skip
    out.print(table)
    out.print(
        f"{change} {incident_id}: {s.device_epochs_regained:,} device-epochs regained, "
        f"{s.device_epochs_lost:,} lost, {s.devices_changed:,} devices and "
        f"{s.suppliers_changed:,} suppliers changed; nothing has been written"
    )
