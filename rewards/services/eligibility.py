"""Use case: eligibility computed from files, exactly as the pipeline computes it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from sqlalchemy import Engine

from rewards.archive import HeartbeatArchive
from rewards.compute import compute, split_inputs
from rewards.core import (
    DEFAULT_YEARS,
    RESULT_FILE_COLUMNS,
    SeasonPolicy,
    YearWindow,
    csv_bytes,
    device_epochs,
    epoch_payouts,
    incident_versions,
    online_intervals,
)
from rewards.db.engine import unit_of_work
from rewards.db.incidents import devices_frame
from rewards.db.interval_reads import load_intervals
from rewards.inputs import (
    InputError,
    read_devices,
    read_heartbeats,
    read_incident_versions,
    read_incidents,
    read_intervals,
)
from rewards.services.computing import ComputePlan, season_confirmed
from rewards.services.files import write_atomically
from rewards.services.versions import incident_versions_of


def compute_from_files(
    policy: SeasonPolicy,
    *,
    heartbeats: Path | str | None = None,
    intervals: Path | None = None,
    incidents: Path | None = None,
    devices: Path | None = None,
    versions: Path | None = None,
    years: YearWindow = DEFAULT_YEARS,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Device-epoch results and epoch payouts from input files (raises InputError); every
    time in them must fall within `years` (the engine's is settings.timestamp_years).

    The online time comes from `heartbeats` (a file, or a heartbeat archive's URL) or from
    `intervals` (a file as `rewards intervals export` writes), one of them. From intervals,
    a version-scoped incident needs `versions`: each device's agent_version at its start
    (heartbeats show it; intervals show only the versions at their edges)."""
    if (heartbeats is None) == (intervals is None):
        raise InputError("give the heartbeats or the intervals, one of them")
    if versions is not None and intervals is None:
        raise InputError("incident versions go with intervals; heartbeats show the versions")
    confirmed = read_incidents(incidents, years=years) if incidents else None
    meta = read_devices(devices, years=years) if devices else None
    if heartbeats is not None:
        beats = _heartbeats_of(heartbeats, years)
        online = online_intervals(beats, policy)
        scoped = incident_versions(beats, confirmed) if confirmed is not None else None
    else:
        assert intervals is not None
        online = read_intervals(intervals, years=years)
        scoped = read_incident_versions(versions) if versions is not None else None
        _check_versions_given(confirmed, scoped)
    results = device_epochs(
        online, policy, incidents=confirmed, devices=meta, incident_versions=scoped
    )
    return results, epoch_payouts(results, policy)


@dataclass(frozen=True)
class ShardedOutcome:
    """What a computation by shard wrote: its rows, the eligible ones, and per epoch the
    payouts (as `epoch_payouts`)."""

    rows: int
    eligible: int
    payouts: pl.DataFrame


def compute_by_shard(
    policy: SeasonPolicy,
    *,
    intervals: Path,
    out: Path,
    shards: int,
    plan: ComputePlan | None = None,
    incidents: Path | None = None,
    devices: Path | None = None,
    versions: Path | None = None,
    years: YearWindow = DEFAULT_YEARS,
    progress: Callable[[str], None] | None = None,
) -> ShardedOutcome:
    """`compute_from_files` from intervals, device shard by shard (DESIGN 8), written to
    `out` an epoch at a time: the same file, byte for byte, in memory bounded by a shard
    and the input file (checked whole first: its checks span rows), never the season's
    results. `plan` says who runs the shards (its shard size is not used: `shards` is)
    and where the work folder goes (default: beside `out`)."""
    if shards < 1:
        raise InputError(f"shards must be at least 1, got {shards}")
    plan = plan or ComputePlan(work_dir=out.parent)
    if out.suffix not in (".parquet", ".csv"):
        raise InputError(f"--out {out}: expected a .parquet or .csv file")
    tell = progress or (lambda _stage: None)
    tell("reading and checking the inputs")
    confirmed = read_incidents(incidents, years=years) if incidents else None
    meta = read_devices(devices, years=years) if devices else None
    online = read_intervals(intervals, years=years)
    scoped = read_incident_versions(versions) if versions is not None else None
    _check_versions_given(confirmed, scoped)
    out.parent.mkdir(parents=True, exist_ok=True)
    with plan.work(".shards-") as work:
        tell(f"splitting into {shards} shards")
        season = split_inputs(
            work / "season",
            shards,
            online.lazy(),
            devices=None if meta is None else meta.lazy(),
            incident_versions=None if scoped is None else scoped.lazy(),
        )
        del online
        with plan.executor() as executor:
            compute(season, policy, incidents=confirmed, executor=executor, progress=tell)
        tell(f"writing {out}")
        return _write_by_epoch(season.epochs(range(policy.epoch_count)), out, policy, work)


def _write_by_epoch(
    epochs: Iterator[pl.DataFrame], out: Path, policy: SeasonPolicy, work: Path
) -> ShardedOutcome:
    """Results an epoch at a time into `out` (as `write_results` writes them whole)."""
    rows = eligible = 0
    payouts: list[pl.DataFrame] = []
    parts: list[Path] = []
    for number, results in enumerate(epochs):
        rows += results.height
        eligible += int(results.get_column("eligible").sum())
        payouts.append(epoch_payouts(results, policy))
        part = work / f"out-{number:05d}{out.suffix}"
        write_results(results, part, header=number == 0)
        parts.append(part)

    def write(path: Path) -> None:
        if out.suffix == ".parquet":
            pl.scan_parquet(parts).sink_parquet(path)
            return
        with path.open("wb") as target:
            for part in parts:
                target.write(part.read_bytes())

    write_atomically(out, write)
    return ShardedOutcome(rows, eligible, pl.concat(payouts).sort("epoch"))


def _check_versions_given(confirmed: pl.DataFrame | None, scoped: pl.DataFrame | None) -> None:
    """A version-scoped incident computed from intervals needs the incident versions."""
    if confirmed is None or scoped is not None:
        return
    by_version = confirmed.filter(pl.col("scope_version_below").is_not_null())
    if not by_version.is_empty():
        names = ", ".join(repr(i) for i in by_version.get_column("incident_id"))
        raise InputError(
            f"incident {names} is scoped by agent version: from intervals, give each "
            "device's version at its start with --incident-versions (a snapshot's audit "
            "inputs hold them), or compute from the heartbeats"
        )


def is_archive(source: Path | str) -> bool:
    """Whether `source` names a heartbeat archive (s3://..., or a Delta table's folder)
    rather than a heartbeats file."""
    text = str(source)
    return text.startswith("s3://") or (Path(text) / "_delta_log").is_dir()


def _heartbeats_of(source: Path | str, years: YearWindow) -> pl.DataFrame:
    """The heartbeats of a file (checked like any input) or of an archive (DESIGN 8; what
    ingest stored there was checked at the door, and duplicates resolve by DESIGN 4.1)."""
    if is_archive(source):
        return HeartbeatArchive(str(source)).heartbeats()
    return read_heartbeats(Path(source), years=years)


def write_results(results: pl.DataFrame, out: Path, *, header: bool = True) -> None:
    """Write the output columns as Parquet or CSV, atomically (nothing on error); a CSV
    without its header line when `header` is false (a part after the first)."""
    if out.suffix not in (".parquet", ".csv"):
        raise InputError(f"--out {out}: expected a .parquet or .csv file")
    table = results.select(RESULT_FILE_COLUMNS)
    if out.suffix == ".parquet":
        write_atomically(out, table.write_parquet)
    else:
        text = table.with_columns(pl.col("epoch_start").dt.to_string("%Y-%m-%dT%H:%M:%SZ"))
        data = csv_bytes(text)
        if not header:
            data = data.split(b"\n", 1)[1]

        def write(path: Path) -> None:
            path.write_bytes(data)

        write_atomically(out, write)


def compute_from_database(
    engine: Engine, policy: SeasonPolicy, archive: HeartbeatArchive | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Device-epoch results and payouts from stored intervals, confirmed incidents and the
    device metadata history: the same rules as from files."""
    with unit_of_work(engine) as session:
        confirmed, window = season_confirmed(session, policy)
        intervals = load_intervals(session.connection(), window)
        meta = devices_frame(session)
        versions = incident_versions_of(session.connection(), confirmed, intervals, policy, archive)
    results = device_epochs(
        intervals, policy, incidents=confirmed, devices=meta, incident_versions=versions
    )
    return results, epoch_payouts(results, policy)
