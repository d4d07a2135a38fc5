"""`rewards eligibility`: device-epoch eligibility from files, and the view the API answers
suppliers from.

The eligibility services are imported inside each command, so that `rewards --help` starts
fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from rewards.cli._progress import StageProgress
from rewards.cli._shell import SchedulerOption, _season_shell, err, fail, out, utc_now
from rewards.core import PolicyError
from rewards.settings import SettingsError, get_settings

eligibility_app = typer.Typer(no_args_is_help=True, help="Device-epoch eligibility.")


@eligibility_app.command("compute")
def eligibility_compute(
    season: Annotated[Path, typer.Option(help="Season policy TOML file.")],
    out_file: Annotated[Path, typer.Option("--out", help="Results: .parquet or .csv.")],
    heartbeats: Annotated[
        str | None,
        typer.Option(
            help="Heartbeats: a .parquet, .csv or .ndjson file, or a heartbeat archive "
            "(its folder, or s3://bucket/prefix)."
        ),
    ] = None,
    intervals: Annotated[
        Path | None,
        typer.Option(
            help="Online intervals instead of heartbeats, as `rewards intervals export` "
            "writes them (device_id, start, end, first/last boot_id and agent_version)."
        ),
    ] = None,
    incidents: Annotated[Path | None, typer.Option(help="Incidents JSON list.")] = None,
    devices: Annotated[
        Path | None,
        typer.Option(help="Devices: device_id, gpu_model, suspended[, valid_from, valid_to]."),
    ] = None,
    incident_versions: Annotated[
        Path | None,
        typer.Option(
            help="With --intervals and incidents scoped by agent version: incident_id, "
            "device_id, agent_version (each device's version at the incident's start)."
        ),
    ] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --intervals: compute device shard by shard, in memory bounded by a "
            "shard, writing the results an epoch at a time (the same file).",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=0, help="With --shards: local processes to spread them over.")
    ] = 0,
    scheduler: SchedulerOption = None,
) -> None:
    """Compute device-epoch eligibility and rewards from files, without a database: from
    heartbeats or from intervals, with the same results."""
    from rewards.inputs import InputError
    from rewards.seasons import load_policy
    from rewards.services.eligibility import compute_from_files, write_results

    if out_file.suffix not in (".parquet", ".csv"):
        fail(f"--out {out_file}: expected a .parquet or .csv file")
    if shards is not None:
        if intervals is None or heartbeats is not None:
            fail("--shards computes from --intervals (heartbeats are not split by shard yet)")
        others = (incidents, devices, incident_versions)
        _compute_by_shard(season, out_file, intervals, others, shards, (workers, scheduler))
        return
    if workers or scheduler:
        fail("--workers and --scheduler go with --shards")
    try:
        years = get_settings().timestamp_years  # the files' times obey the engine's window
        policy = load_policy(season)
        results, payouts = compute_from_files(
            policy,
            heartbeats=heartbeats,
            intervals=intervals,
            incidents=incidents,
            devices=devices,
            versions=incident_versions,
            years=years,
        )
        write_results(results, out_file)
    except (InputError, PolicyError, SettingsError) as exc:
        fail(str(exc))
    _report(out_file, results.height, int(results.get_column("eligible").sum()), payouts)


def _report(out_file: Path, rows: int, eligible: int, payouts: pl.DataFrame, how: str = "") -> None:
    """What was written, and the epochs that paid nothing and why."""
    paid = int(payouts.get_column("paid").sum())
    out.print(
        f"wrote {rows:,} device-epoch rows to {out_file}: {eligible:,} eligible, "
        f"{paid:,} base units paid{how}"
    )
    notes = payouts.filter(pl.col("note").is_not_null()).select("epoch", "note").rows()
    for first, last, note in _runs_of_notes(notes):
        where = f"epoch {first}" if first == last else f"epochs {first}-{last}"
        err.print(f"{where}: {note}")


def _compute_by_shard(
    season: Path,
    out_file: Path,
    intervals: Path,
    others: tuple[Path | None, Path | None, Path | None],  # incidents, devices, versions
    shards: int,
    how: tuple[int, str | None],  # local worker processes, or a Dask scheduler
) -> None:
    from rewards.inputs import InputError
    from rewards.services.computing import ComputePlan

    workers, scheduler = how
    if workers and scheduler:
        fail("--workers and --scheduler: give one (local processes, or a Dask cluster)")
    plan = ComputePlan(workers=workers, scheduler=scheduler, work_dir=out_file.parent)
    from rewards.seasons import load_policy
    from rewards.services.eligibility import compute_by_shard

    try:
        outcome = compute_by_shard(
            load_policy(season),
            intervals=intervals,
            out=out_file,
            shards=shards,
            plan=plan,
            incidents=others[0],
            devices=others[1],
            versions=others[2],
            years=get_settings().timestamp_years,
            progress=lambda stage: err.print(f"{stage} ...", highlight=False),
        )
    except (InputError, PolicyError, SettingsError) as exc:
        fail(str(exc))
    _report(out_file, outcome.rows, outcome.eligible, outcome.payouts, f" ({shards} shards)")


@eligibility_app.command("refresh")
def eligibility_refresh(
    season: Annotated[str | None, typer.Option(help="Season ID (default: configured).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if nothing changed.")
    ] = False,
) -> None:
    """Rebuild the eligibility view the API answers suppliers from (the scheduler does this
    every `eligibility_view_every_s`)."""
    from rewards.services.archive import open_archive
    from rewards.services.eligibility_view import ViewError, refresh_view
    from rewards.services.runs import JobBusy
    from rewards.services.snapshot_runs import Stages

    sh = _season_shell(season)
    shown = StageProgress("eligibility view")
    stages = Stages(on_stage=shown.on_stage, on_progress=shown.on_progress)
    try:
        outcome = refresh_view(
            sh.engine(),
            sh.policy,
            trigger="manual",
            clock=utc_now,
            lock_ttl=sh.settings.job_lock,
            archive=open_archive(sh.settings.archive_url),
            force=force,
            stages=stages,
            plan=sh.plan(),
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
