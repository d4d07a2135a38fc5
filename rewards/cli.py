"""The `rewards` command: parse, call one service, print. Bad input is a message, not a
traceback; exit codes: 0 done, 1 the work failed (see the message), 2 bad input or
settings, 3 another process holds the job."""

from __future__ import annotations

import json
import logging
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import polars as pl
import typer
from rich.console import Console
from rich.status import Status

from rewards.core import PolicyError, SeasonPolicy
from rewards.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Engine

    from rewards.services.ingest import IngestReport
    from rewards.services.records import SnapshotRecord
    from rewards.sim.fleet import FleetSpec

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Ignition uptime and rewards snapshot engine."
)
db_app = typer.Typer(no_args_is_help=True, help="Database migrations.")
sim_app = typer.Typer(no_args_is_help=True, help="The uptime API simulator.")
intervals_app = typer.Typer(no_args_is_help=True, help="Online intervals.")
eligibility_app = typer.Typer(no_args_is_help=True, help="Device-epoch eligibility.")
incidents_app = typer.Typer(no_args_is_help=True, help="Incidents: declare, detect, decide.")
snapshot_app = typer.Typer(
    no_args_is_help=True, help="Reward snapshots: run, publish, diff, export, prove."
)
app.add_typer(db_app, name="db")
app.add_typer(sim_app, name="sim")
app.add_typer(intervals_app, name="intervals")
app.add_typer(eligibility_app, name="eligibility")
app.add_typer(incidents_app, name="incidents")
app.add_typer(snapshot_app, name="snapshot")
audit_app = typer.Typer(no_args_is_help=True, help="The append-only, hash-chained audit log.")
app.add_typer(audit_app, name="audit")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@dataclass
class Shell:
    settings: Settings
    policy: SeasonPolicy

    def engine(self, *, serving: bool = False) -> Engine:
        """The configured database, reachable and migrated, or a message and exit."""
        from rewards.services.database import DatabaseNotReady, open_database

        try:
            return open_database(self.settings.sqlalchemy_url, serving=serving)
        except DatabaseNotReady as exc:
            fail(str(exc))


def shell() -> Shell:
    from rewards.seasons import load_policy

    try:
        settings = get_settings()
        return Shell(settings, load_policy(settings.season_file))
    except (SettingsError, PolicyError) as exc:
        fail(str(exc))


def utc_now() -> datetime:
    return datetime.now(UTC)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database up to REVISION (default: the latest)."""
    from rewards.services.database import upgrade

    settings = shell().settings
    upgrade(settings.sqlalchemy_url, revision)
    out.print(f"database at {revision}: {settings.database_url}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    from rewards.services.database import downgrade

    downgrade(shell().settings.sqlalchemy_url, revision)
    out.print(f"database at {revision}")


def _spec(
    seed: int, devices: int, days: int, scenario: str, period: int, bad_rate: float = 0.0
) -> FleetSpec:
    from rewards.sim.fleet import FleetSpec

    try:
        return FleetSpec(
            seed=seed,
            devices=devices,
            days=days,
            scenario=scenario,
            heartbeat_period_s=period,
            bad_record_rate=bad_rate,
        )
    except ValueError as exc:
        fail(str(exc))


Seed = Annotated[int, typer.Option(help="Random seed; equal arguments give equal fleets.")]
Devices = Annotated[int, typer.Option(min=1, help="Number of devices.")]
Days = Annotated[int, typer.Option(min=1, help="Simulated days from 2024-04-20T00:00Z.")]
Scenario = Annotated[str, typer.Option(help="steady or april-2024.")]
Period = Annotated[int, typer.Option(min=1, help="Heartbeat period in seconds.")]
BadRate = Annotated[float, typer.Option(min=0, max=1, help="Share of malformed records.")]


@sim_app.command("serve")
def sim_serve(
    seed: Seed = 1,
    devices: Devices = 200,
    days: Days = 7,
    scenario: Scenario = "april-2024",
    period: Period = 60,
    bad_rate: BadRate = 0.0,
    host: str = "127.0.0.1",
    port: int = 8600,
    token: Annotated[
        str | None,
        typer.Option(help="Service token to require (default: REWARDS_UPTIME_API_TOKEN)."),
    ] = None,
    error_rate: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    throttle_rate: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    retry_after: Annotated[int, typer.Option(min=0)] = 1,
    slow_rate: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    truncate_rate: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    fault_seed: int = 0,
) -> None:
    """Serve a simulated uptime API over HTTP until interrupted."""
    import uvicorn

    from rewards.sim.server import Faults, UptimeSimulator, create_sim_app

    secret = token or shell().settings.uptime_api_token.get_secret_value()
    if not secret:
        fail("the simulator needs a service token: --token or REWARDS_UPTIME_API_TOKEN")
    faults = Faults(
        error_rate=error_rate,
        throttle_rate=throttle_rate,
        retry_after_s=retry_after,
        slow_rate=slow_rate,
        truncate_rate=truncate_rate,
        seed=fault_seed,
    )
    spec = _spec(seed, devices, days, scenario, period, bad_rate)
    err.print(f"simulating {devices} devices over {days} days ({scenario}) ...")
    simulator = UptimeSimulator(spec, token=secret, faults=faults)
    err.print(
        f"serving {simulator.heartbeats.height:,} heartbeat deliveries and "
        f"{simulator.devices.height:,} device records on http://{host}:{port}"
    )
    uvicorn.run(
        create_sim_app(simulator), host=host, port=port, log_level="warning", access_log=False
    )


@sim_app.command("dump")
def sim_dump(
    out_file: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    seed: Seed = 1,
    devices: Devices = 200,
    days: Days = 7,
    scenario: Scenario = "april-2024",
    period: Period = 60,
    bad_rate: BadRate = 0.0,
) -> None:
    """Write the heartbeats `sim serve` with the same arguments delivers, deduplicated."""
    from rewards.services.files import write_parquet
    from rewards.sim.fleet import delivered_heartbeats, delivery_log

    if out_file.suffix != ".parquet":
        fail(f"--out {out_file}: expected a .parquet file")
    truth = delivered_heartbeats(
        delivery_log(_spec(seed, devices, days, scenario, period, bad_rate))
    )
    write_parquet(truth, out_file)
    out.print(f"wrote {truth.height:,} heartbeats to {out_file}")


@app.command("ingest")
def ingest(
    once: Annotated[bool, typer.Option("--once", help="Pull until caught up, then exit.")] = False,
    stream: Annotated[str, typer.Option(help="devices, heartbeats or all.")] = "all",
) -> None:
    """Pull devices and heartbeats from the uptime API until caught up."""
    from jobs.ingest import JOB_IDS, pull_job
    from rewards.services.runs import JobBusy, exclusive_run

    if not once:
        fail("use `rewards ingest --once` for one pull, or `rewards scheduler` to keep pulling")
    streams = ["devices", "heartbeats"] if stream == "all" else [stream]
    if any(s not in JOB_IDS for s in streams):
        fail(f"--stream {stream}: expected devices, heartbeats or all")
    sh = shell()
    engine = sh.engine()
    failed = False
    for name in streams:
        with _progress(name) as on_page:
            try:
                with exclusive_run(
                    engine,
                    job_id=JOB_IDS[name],
                    trigger="manual",
                    clock=utc_now,
                    ttl=sh.settings.job_lock,
                ) as context:
                    pull_job(engine, sh.settings, sh.policy, name, clock=utc_now, on_page=on_page)(
                        context
                    )
            except JobBusy as busy:
                fail(str(busy), 3)
        summary = (
            f"{name}: {context.pages:,} pages, {context.pulled:,} records, "
            f"{context.stored:,} stored, {context.quarantined:,} quarantined"
        )
        if context.error:
            failed = True
            err.print(f"[bold red]{summary}; stopped:[/] {context.error}", highlight=False)
        else:
            out.print(summary + "; caught up", highlight=False)
    if failed:
        raise typer.Exit(1)


class _progress:
    """A live line of counts while a stream is pulled, when stderr is a terminal."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.status: Status | None = None

    def __enter__(self) -> Callable[[IngestReport], None]:
        import time

        started = time.monotonic()
        if err.is_terminal:
            self.status = err.status(f"pulling {self.stream} ...")
            self.status.__enter__()

        def on_page(report: IngestReport) -> None:
            if self.status is not None:
                rate = report.pulled / max(time.monotonic() - started, 1e-9)
                self.status.update(
                    f"pulling {self.stream}: {report.pages:,} pages, {report.pulled:,} records "
                    f"({rate:,.0f}/s), {report.quarantined:,} quarantined, "
                    f"{report.retries} retries"
                )

        return on_page

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(None, None, None)


@intervals_app.command("export")
def intervals_export(
    out_file: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
) -> None:
    """Write every stored online interval (device_id, start, end) to Parquet."""
    from rewards.services.intervals import export_intervals

    if out_file.suffix != ".parquet":
        fail(f"--out {out_file}: expected a .parquet file")
    count = export_intervals(shell().engine(), out_file)
    out.print(f"wrote {count:,} intervals to {out_file}")


@eligibility_app.command("compute")
def eligibility_compute(
    season: Annotated[Path, typer.Option(help="Season policy TOML file.")],
    heartbeats: Annotated[Path, typer.Option(help="Heartbeats: .parquet, .csv or .ndjson.")],
    out_file: Annotated[Path, typer.Option("--out", help="Results: .parquet or .csv.")],
    incidents: Annotated[Path | None, typer.Option(help="Incidents JSON list.")] = None,
    devices: Annotated[
        Path | None,
        typer.Option(help="Devices: device_id, gpu_model, suspended[, valid_from, valid_to]."),
    ] = None,
) -> None:
    """Compute device-epoch eligibility and rewards from files, without a database."""
    from rewards.inputs import InputError
    from rewards.seasons import load_policy
    from rewards.services.eligibility import compute_from_files, write_results

    if out_file.suffix not in (".parquet", ".csv"):
        fail(f"--out {out_file}: expected a .parquet or .csv file")
    try:
        years = get_settings().timestamp_years  # the files' times obey the engine's window
        policy = load_policy(season)
        results, payouts = compute_from_files(
            policy, heartbeats=heartbeats, incidents=incidents, devices=devices, years=years
        )
        write_results(results, out_file)
    except (InputError, PolicyError, SettingsError) as exc:
        fail(str(exc))
    eligible = int(results.get_column("eligible").sum())
    out.print(
        f"wrote {results.height:,} device-epoch rows to {out_file}: {eligible:,} eligible, "
        f"{int(payouts.get_column('paid').sum()):,} base units paid"
    )
    notes = payouts.filter(pl.col("note").is_not_null()).select("epoch", "note").rows()
    for first, last, note in _runs_of_notes(notes):
        where = f"epoch {first}" if first == last else f"epochs {first}-{last}"
        err.print(f"{where}: {note}")


@eligibility_app.command("refresh")
def eligibility_refresh(
    season: Annotated[str | None, typer.Option(help="Season ID (default: configured).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if nothing changed.")
    ] = False,
) -> None:
    """Rebuild the eligibility view the API answers suppliers from (the scheduler does this
    every `eligibility_view_every_s`)."""
    from rewards.services.eligibility_view import ViewError, refresh_view
    from rewards.services.runs import JobBusy
    from rewards.services.snapshot_runs import Stages

    sh = _season_shell(season)
    stages = Stages(
        on_stage=lambda name: err.print(f"eligibility view: {name} ...", highlight=False)
    )
    try:
        outcome = refresh_view(
            sh.engine(),
            sh.policy,
            trigger="manual",
            clock=utc_now,
            lock_ttl=sh.settings.job_lock,
            force=force,
            stages=stages,
        )
    except JobBusy as busy:
        fail(str(busy), 3)
    except ViewError as exc:
        fail(str(exc))
    view = outcome.view
    if not outcome.created:
        out.print(f"inputs unchanged since the view as of {view.as_of:%Y-%m-%d %H:%M}Z: kept it")
        return
    out.print(
        f"eligibility view as of {view.as_of:%Y-%m-%d %H:%M}Z: {view.rows:,} device-epochs "
        f"over {view.epochs} epochs, one document per supplier ({view.owners:,})",
        highlight=False,
    )
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in stages.seconds.items())
    err.print(f"took {timings}", highlight=False)


def _runs_of_notes(notes: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """Consecutive epochs with the same note, as (first, last, note)."""
    runs: list[tuple[int, int, str]] = []
    for epoch, note in notes:
        if runs and runs[-1][2] == note and runs[-1][1] == epoch - 1:
            runs[-1] = (runs[-1][0], epoch, note)
        else:
            runs.append((epoch, epoch, note))
    return runs


def _actor(value: str) -> str:
    """An actor is an identifier (DESIGN 10), so two look-alike names are never two people."""
    from rewards.core import identifier_problem

    if problem := identifier_problem(value):
        fail(f"--by {value!r}: an actor {problem}")
    return value


Actor = Annotated[
    str,
    typer.Option("--by", callback=_actor, help="Who is deciding (recorded in the audit log)."),
]


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
    deadline: Annotated[str, typer.Option(help="Recovery deadline, e.g. 48h.")] = "0s",
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


@incidents_app.command("list")
def incidents_list(
    status: Annotated[str | None, typer.Option(help="proposed, confirmed or dismissed.")] = None,
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


SnapshotRef = Annotated[
    str, typer.Argument(help="SEASON-vN, or vN / N of the configured season.", show_default=False)
]


def _snapshot(engine: Engine, ref: str, season: str) -> SnapshotRecord:
    from rewards.services.snapshots import SnapshotError, resolve

    try:
        return resolve(engine, ref, season)
    except SnapshotError as exc:
        fail(str(exc))


def _season_shell(season: str | None) -> Shell:
    from rewards.seasons import load_policy

    sh = shell()
    if season is None or season == sh.policy.season_id:
        return sh
    path = sh.settings.season_file.with_name(f"{season}.toml")
    try:
        return Shell(sh.settings, load_policy(path))
    except PolicyError as exc:
        fail(str(exc))


@snapshot_app.command("run")
def snapshot_run(
    by: Annotated[str, typer.Option("--by", callback=_actor, help="Who is running it (recorded).")],
    reason: Annotated[str, typer.Option(help="Why (recorded), e.g. 'incident confirmed'.")],
    season: Annotated[str | None, typer.Option(help="Season ID (default: configured).")] = None,
    epochs: Annotated[
        str | None,
        typer.Option(help="A:B, both included (default: every epoch closed and settled)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Make a new version even if nothing changed.")
    ] = False,
) -> None:
    """Compute a draft snapshot over frozen inputs; publish it with `snapshot publish`."""
    from rewards.console import print_snapshot
    from rewards.core import parse_epoch_range
    from rewards.services.runs import JobBusy
    from rewards.services.settlement import settled_epochs
    from rewards.services.snapshot_runs import Stages, run_snapshot
    from rewards.services.snapshots import SnapshotError, label

    sh = _season_shell(season)
    policy = sh.policy
    engine = sh.engine()
    try:
        chosen = (
            parse_epoch_range(epochs, policy.epoch_count)
            if epochs
            else settled_epochs(
                engine,
                policy,
                now=utc_now(),
                settlement=sh.settings.settlement,
            )
        )
    except ValueError as exc:
        fail(f"--epochs {exc}")
    stages = Stages(on_stage=lambda name: err.print(f"snapshot: {name} ...", highlight=False))
    try:
        outcome = run_snapshot(
            engine,
            policy,
            epochs=chosen,
            trigger="manual",
            triggered_by=by,
            reason=reason,
            clock=utc_now,
            lock_ttl=sh.settings.job_lock,
            force=force,
            stages=stages,
        )
    except JobBusy as busy:
        fail(str(busy), 3)
    except SnapshotError as exc:
        fail(str(exc))
    snap = outcome.snapshot
    if not outcome.created:
        out.print(
            f"inputs, policy and code unchanged since {label(snap)} ({snap.status}): "
            "no new version (use --force to make one anyway)",
            highlight=False,
        )
        return
    print_snapshot(snap, out)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in stages.seconds.items())
    err.print(f"took {timings}", highlight=False)


@snapshot_app.command("list")
def snapshot_list(
    season: Annotated[str | None, typer.Option(help="Only this season.")] = None,
) -> None:
    """Snapshots, newest first: version, status, epochs, totals, root."""
    from rewards.services.snapshots import label, list_snapshots

    headers = ("snapshot", "status", "epochs", "created", "paid", "suppliers", "merkle_root")
    typer.echo("\t".join(headers))
    for snap in list_snapshots(shell().engine(), season):
        row = (
            label(snap),
            snap.status,
            f"{snap.epoch_first}-{snap.epoch_last}",
            f"{snap.created_at:%F %T}",
            str(snap.total_paid),
            str(snap.suppliers),
            snap.merkle_root,
        )
        typer.echo("\t".join(row))


@snapshot_app.command("show")
def snapshot_show(ref: SnapshotRef) -> None:
    """Everything a snapshot records."""
    from rewards.console import print_snapshot

    sh = shell()
    print_snapshot(_snapshot(sh.engine(), ref, sh.policy.season_id), out)


@snapshot_app.command("publish")
def snapshot_publish(
    ref: SnapshotRef,
    by: Annotated[str, typer.Option("--by", callback=_actor, help="Who publishes (audit log).")],
    override_rollback: Annotated[
        bool,
        typer.Option(
            "--override-rollback",
            help="Publish a version older than the published one (a rollback; needs --reason).",
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why the rollback (recorded in the audit log).")
    ] = None,
) -> None:
    """Make a draft the season's published snapshot; the previous one becomes superseded.

    Publishing a version older than the published one rolls the season back (DESIGN 9): it
    prints what moves and is refused unless --override-rollback and --reason are given."""
    from rewards.console import print_diff
    from rewards.services.publication import publish, rollback_from
    from rewards.services.runs import JobBusy
    from rewards.services.snapshots import SnapshotError, diff, label

    if override_rollback and not (reason or "").strip():
        fail("--override-rollback needs --reason: say why the season goes back")
    if reason is not None and not override_rollback:
        fail("--reason is recorded only with --override-rollback")
    sh = shell()
    engine = sh.engine()
    snap = _snapshot(engine, ref, sh.policy.season_id)
    try:
        newer = rollback_from(engine, snap)
        if newer is not None and snap.status == "draft":
            out.print(
                f"rollback: publishing {label(snap)} replaces the newer published "
                f"{label(newer)}; what moves:",
                highlight=False,
            )
            print_diff(diff(engine, newer, snap), out)
            if not override_rollback:
                fail(
                    f"{label(snap)} is older than the published {label(newer)}: refusing to "
                    "roll back without --override-rollback --reason TEXT",
                    1,
                )
        previous = publish(
            engine,
            snap,
            by=by,
            clock=utc_now,
            lock_ttl=sh.settings.job_lock,
            rollback_reason=reason if override_rollback else None,
        )
    except JobBusy as busy:
        fail(str(busy), 3)
    except SnapshotError as exc:
        fail(str(exc))
    tail = f"; {label(previous)} is now superseded" if previous else ""
    out.print(f"{label(snap)} published (merkle root {snap.merkle_root}){tail}", highlight=False)


@snapshot_app.command("diff")
def snapshot_diff(
    before: SnapshotRef,
    after: SnapshotRef,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the full tables (CSV and Parquet) here."),
    ] = None,
) -> None:
    """What changed between two snapshots: device-epochs and suppliers, base units moved."""
    from rewards.console import print_diff
    from rewards.services.exports import fresh_directory, write_tables
    from rewards.services.snapshots import SnapshotError, diff

    sh = shell()
    engine = sh.engine()
    a = _snapshot(engine, before, sh.policy.season_id)
    b = _snapshot(engine, after, sh.policy.season_id)
    try:
        result = diff(engine, a, b)
        print_diff(result, out)
        if out_dir:
            decimals = json.loads(b.policy)["token_decimals"]
            with fresh_directory(out_dir) as partial:
                write_tables(
                    result.rows,
                    partial,
                    "device_epochs",
                    decimals,
                    ["reward_before", "reward_after", "delta"],
                )
                write_tables(
                    result.suppliers,
                    partial,
                    "suppliers",
                    decimals,
                    ["reward_before", "reward_after", "delta"],
                )
            out.print(f"wrote the full diff to {out_dir}", highlight=False)
    except SnapshotError as exc:
        fail(str(exc))


@snapshot_app.command("adjustments")
def snapshot_adjustments(
    paid: Annotated[str, typer.Argument(help="The published snapshot that was paid.")],
    due: Annotated[str, typer.Argument(help="The published snapshot that replaces it.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for CSV and Parquet.")],
) -> None:
    """Per supplier, what is owed (positive) or was overpaid (negative) when DUE replaces PAID."""
    from rewards.services.exports import fresh_directory, write_tables
    from rewards.services.snapshots import SnapshotError, settle

    sh = shell()
    engine = sh.engine()
    a = _snapshot(engine, paid, sh.policy.season_id)
    b = _snapshot(engine, due, sh.policy.season_id)
    try:
        table = settle(engine, a, b)
        decimals = json.loads(b.policy)["token_decimals"]
        with fresh_directory(out_dir) as partial:
            write_tables(table, partial, "adjustments", decimals, ["paid", "due", "adjustment"])
    except SnapshotError as exc:
        fail(str(exc))
    owed = table.filter(pl.col("adjustment") > 0)
    overpaid = table.filter(pl.col("adjustment") < 0)
    out.print(
        f"{owed.height:,} suppliers are owed {int(owed['adjustment'].sum()):,} base units, "
        f"{overpaid.height:,} were overpaid {-int(overpaid['adjustment'].sum()):,}; "
        f"wrote {out_dir}/adjustments.csv and .parquet",
        highlight=False,
    )


@snapshot_app.command("export")
def snapshot_export(
    ref: SnapshotRef,
    out_dir: Annotated[Path, typer.Option("--out", help="A new directory for the export.")],
) -> None:
    """Finance export: rewards per supplier and per device-epoch (CSV, Parquet), manifest."""
    from rewards.services.exports import export
    from rewards.services.snapshots import SnapshotError, label

    sh = shell()
    engine = sh.engine()
    snap = _snapshot(engine, ref, sh.policy.season_id)
    err.print(f"exporting {ref} to {out_dir} ...", highlight=False)
    try:
        manifest = export(engine, snap, out_dir)
    except SnapshotError as exc:
        fail(str(exc))
    out.print(
        f"exported {label(snap)} ({snap.status}) to {out_dir}: "
        f"{manifest['rows']['device_epochs']:,} device-epochs, "
        f"{manifest['rows']['suppliers']:,} suppliers, {manifest['totals']['paid']:,} base units",
        highlight=False,
    )


@snapshot_app.command("verify-export")
def snapshot_verify_export(directory: Path) -> None:
    """Check an export against its manifest.json: hashes, totals, Merkle root."""
    from rewards.services.exports import verify_export

    problems = verify_export(directory)
    for problem in problems:
        err.print(f"[bold red]mismatch:[/] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    out.print(f"{directory}: every file, total and the Merkle root match the manifest")


@snapshot_app.command("proof")
def snapshot_proof(
    ref: SnapshotRef,
    supplier: Annotated[str, typer.Option(help="The supplier's owner_id.")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the JSON here.")] = None,
) -> None:
    """A supplier's Merkle proof (JSON): leaf, sibling path and root."""
    from rewards.services.files import write_atomically
    from rewards.services.snapshots import SnapshotError, proof

    sh = shell()
    engine = sh.engine()
    snap = _snapshot(engine, ref, sh.policy.season_id)
    try:
        document = proof(engine, snap, supplier)
    except SnapshotError as exc:
        fail(str(exc))
    body = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out_file:
        write_atomically(out_file, lambda p: _write_text(p, body))
        out.print(f"wrote the proof for {supplier} to {out_file}", highlight=False)
    else:
        typer.echo(body, nl=False)


def _write_text(path: Path, body: str) -> None:
    path.write_text(body, encoding="utf-8")


@snapshot_app.command("verify-proof")
def snapshot_verify_proof(
    proof_file: Path,
    root: Annotated[
        str | None,
        typer.Option(help="The published root to check against (default: the engine's)."),
    ] = None,
) -> None:
    """Check a proof file: its leaf must hash up to the published root (exit 1 when it does
    not). Without --root the root comes from the engine's database, never from the file
    (a forged file carries a root that fits it); it says which root it checked."""
    from sqlalchemy.exc import SQLAlchemyError

    from rewards.core import check_proof_document
    from rewards.services.snapshots import SnapshotError, label, root_of_record

    try:
        document = json.loads(proof_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{proof_file}: {exc}")
    if not isinstance(document, dict):
        fail(f"{proof_file}: not a proof document (a JSON object with leaf, proof, root)")
    if root is not None:
        source = "given with --root"
    else:
        try:
            snap = root_of_record(shell().engine(), document.get("leaf"))
        except (SnapshotError, SQLAlchemyError) as exc:
            reason = exc if isinstance(exc, SnapshotError) else "the database is unreachable"
            fail(
                f"no --root given and no published root to check against: {reason}; pass "
                "--root HEX from the published manifest (the root inside the file proves "
                "nothing)"
            )
        root = snap.merkle_root
        source = f"of {label(snap)} ({snap.status}) from the engine's database"
    checked = f"checked against root {root} {source}"
    if not check_proof_document(document, root):
        err.print(f"[bold red]invalid:[/] {proof_file} does not lead to the root", highlight=False)
        err.print(checked, highlight=False)
        raise typer.Exit(1)
    out.print(f"valid: {document['leaf']} is in the tree with root {root}", highlight=False)
    out.print(checked, highlight=False)


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the audit log's hash chain; exit 1 naming the first entries that break it."""
    from rewards.services.audit_log import verify_audit_log

    report = verify_audit_log(shell().engine())
    for problem in report.problems:
        err.print(f"[bold red]broken:[/] {problem}", highlight=False)
    if not report.intact:
        raise typer.Exit(1)
    out.print(f"audit log intact: {report.entries:,} entries, chain and head agree")


@app.command("dev-token")
def dev_token(
    sub: Annotated[str, typer.Option(help="The subject: a supplier's owner_id, or a person.")],
    role: Annotated[list[str], typer.Option(help="supplier, finance or admin (repeatable).")],
    ttl_minutes: Annotated[int, typer.Option(min=1, max=24 * 60)] = 60,
) -> None:
    """Sign a development token (only when dev_issuer_enabled is set; never in production)."""
    from rewards.api.verifier import dev_issuer

    sh = shell()
    if not sh.settings.dev_issuer_enabled:
        fail("the development issuer is off: set REWARDS_DEV_ISSUER_ENABLED=true to use it")
    try:
        token = dev_issuer(sh.settings).token(
            sub, role, now=utc_now(), ttl=timedelta(minutes=ttl_minutes)
        )
    except ValueError as exc:
        fail(str(exc))
    typer.echo(token)


Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]


def _api_app(sh: Shell) -> object:
    from rewards.api.verifier import make_verifier
    from rewards.web.app import create_site

    verifier = make_verifier(sh.settings)
    if verifier is None:
        err.print(
            "warning: no token issuer configured (auth_issuer and auth_jwks_url, or "
            "dev_issuer_enabled): every authenticated route will answer 401",
            highlight=False,
        )
    return create_site(sh.engine(serving=True), sh.settings, verifier)


def worker_app() -> object:
    """The API app of one uvicorn worker process (settings from the environment)."""
    return _api_app(shell())


@app.command("api")
def api(
    host: Host = "127.0.0.1",
    port: Port = 8700,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes (each keeps its own rate-limit and surge counts).",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (uvicorn)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if workers == 1:
        uvicorn.run(_api_app(shell()), host=host, port=port, log_level="info", proxy_headers=False)  # type: ignore[arg-type]
    else:
        uvicorn.run(
            "rewards.cli:worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="info",
            proxy_headers=False,  # the API decides whom to trust (trusted_proxies)
        )


@app.command("serve")
def serve(host: Host = "127.0.0.1", port: Port = 8700) -> None:
    """Serve the HTTP API and run the scheduler (as leader or standby) in one process."""
    import uvicorn

    from jobs.scheduler import run_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sh = shell()
    stop = threading.Event()
    scheduler = threading.Thread(
        target=run_scheduler, args=(sh.engine(), sh.settings, sh.policy), kwargs={"stop": stop}
    )
    scheduler.start()
    try:
        uvicorn.run(_api_app(sh), host=host, port=port, log_level="info", proxy_headers=False)  # type: ignore[arg-type]
    finally:
        stop.set()
        scheduler.join(60)


@app.command("scheduler")
def scheduler() -> None:
    """Run the scheduled jobs while this process holds the leader lease; stand by otherwise."""
    import signal

    from jobs.scheduler import run_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sh = shell()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_scheduler(sh.engine(), sh.settings, sh.policy, stop=stop)


@app.command("runs")
def runs(limit: Annotated[int, typer.Option(min=1, max=1000)] = 20) -> None:
    """The latest job runs, newest first."""
    from rich.table import Table

    from rewards.services.runs import recent_runs

    headers = (
        "id",
        "job",
        "trigger",
        "started",
        "status",
        "pages",
        "records",
        "quarantined",
        "error",
    )
    rows = [
        (
            str(run.id),
            run.job_id,
            run.trigger,
            f"{run.started_at:%F %T}",
            run.status,
            str(run.pages),
            str(run.records_pulled),
            str(run.records_quarantined),
            run.error or "",
        )
        for run in recent_runs(shell().engine(), limit)
    ]
    if not out.is_terminal:  # scripts and logs get one tab-separated line per run
        for row in (headers, *rows):
            typer.echo("\t".join(row))
        return
    table = Table(*headers)
    for row in rows:
        table.add_row(*row[:-1], row[-1][:80])
    out.print(table)


@app.command("demo")
def demo(
    devices: Devices = 2_000,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path(
        "var/demo"
    ),
    serve: Annotated[
        bool,
        typer.Option(help="Then serve the web pages on the demo database until Ctrl-C."),
    ] = False,
) -> None:
    """The April 2024 story on the embedded SQLite default: simulate, ingest over HTTP,
    snapshot, detect and confirm the incident, rerun, diff, publish, export, prove; and
    where its web pages open."""
    from rewards.demo import PAGES_PORT, run_demo
    from rewards.seasons import load_policy
    from rewards.settings import REPO_ROOT

    try:
        policy = load_policy(REPO_ROOT / "config" / "seasons" / "april-2024-demo.toml")
    except PolicyError as exc:
        fail(str(exc))
    run_demo(
        policy,
        devices=devices,
        days=policy.epoch_count,
        workdir=workdir.resolve(),
        console=out,
    )
    if serve:
        import uvicorn

        from rewards.api.verifier import make_verifier
        from rewards.services.database import open_database
        from rewards.web.app import create_site

        settings = get_settings(
            database_url=f"sqlite:///{workdir.resolve() / 'rewards.db'}",
            season=policy.season_id,
            dev_issuer_enabled=True,
            public_url=f"http://127.0.0.1:{PAGES_PORT}",
        )
        out.print(f"serving the pages on http://127.0.0.1:{PAGES_PORT}/app (Ctrl-C stops)")
        site = create_site(
            open_database(settings.database_url, serving=True), settings, make_verifier(settings)
        )
        uvicorn.run(
            site, host="127.0.0.1", port=PAGES_PORT, log_level="warning", proxy_headers=False
        )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
