"""A snapshot's frozen inputs by device shard (DESIGN 5, 8), fingerprinted without ever
holding the season's intervals whole.

After `split_inputs` has streamed the database's rows into shard files, each shard is a
task that sorts its intervals once (by device and start, as the core reads them), derives
its devices' incident versions from its intervals and the heartbeats near each
version-scoped incident, and returns the fingerprint parts of both (core/fingerprint.py).
The driver combines them with the parts of the small frames it holds whole. The result
is `core.fingerprint` of the whole frames, whatever the shard count or executor
(tests/compute).

A task may run again (a retried worker): it reads the sorted file when an earlier attempt
wrote it, and removes the unsorted parts only after.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import polars as pl

from rewards.compute import SPILL, ShardedSeason, spill, unspill
from rewards.core import (
    HEARTBEATS,
    INCIDENT_VERSIONS,
    INTERVALS,
    SeasonPolicy,
    combine_fingerprint,
    fingerprint_parts,
    incident_versions_near,
    sorted_by,
)
from rewards.executors import Executor, InProcess, in_groups

_SORTED = f"sorted{SPILL}"

# The frozen files' compression: that of kept inputs (services/kept_inputs.py), which are
# then these files copied as they are, not decoded and encoded again (44M intervals took
# 13-19 s to re-encode; zstd costs a shard 0.2-0.3 s more to write than LZ4).
FROZEN: Final = "zstd"


@dataclass(frozen=True)
class FreezeJob:
    """What every freeze task needs besides its shard number (small); without a policy
    the incident versions are the ones split with the inputs, not derived."""

    season: ShardedSeason
    policy: SeasonPolicy | None
    incidents: pl.DataFrame


def freeze(
    season: ShardedSeason,
    policy: SeasonPolicy,
    *,
    incidents: pl.DataFrame,
    devices: pl.DataFrame,
    owners: pl.DataFrame,
    executor: Executor | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Sort each shard's intervals, write its incident versions (the `near` heartbeats
    split with the inputs), and return the fingerprint of the inputs: the intervals and
    incident versions by shard, `incidents` (confirmed), `devices` and `owners` whole."""
    intervals, versions = freeze_parts(season, policy, incidents=incidents,
                                       executor=executor, progress=progress)  # fmt: skip
    return combine_fingerprint(
        {
            "intervals": (INTERVALS, intervals),
            "incident_versions": (INCIDENT_VERSIONS, versions),
            "incidents": (incidents.schema, [fingerprint_parts(incidents)]),
            "devices": (devices.schema, [fingerprint_parts(devices)]),
            "owners": (owners.schema, [fingerprint_parts(owners)]),
        }
    )


def freeze_parts(
    season: ShardedSeason,
    policy: SeasonPolicy | None,
    *,
    incidents: pl.DataFrame,
    executor: Executor | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """Sort each shard's intervals and, given a `policy`, derive its incident versions;
    returns the fingerprint parts of the intervals and of the incident versions, a shard
    at a time. Without a policy the versions split with the inputs are taken as they are
    (an audit bundle's)."""
    job = FreezeJob(season, policy, incidents)
    tasks = [(job, shard) for shard in range(season.shards)]
    intervals: list[pl.DataFrame] = []
    versions: list[pl.DataFrame] = []
    tell = progress or (lambda _stage: None)
    for done in in_groups(executor or InProcess(), _freeze, tasks, tell, "fingerprint"):
        for shard_intervals, shard_versions in done:
            intervals.append(shard_intervals)
            versions.append(shard_versions)
    return intervals, versions


def _freeze(job: FreezeJob, shard: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Task: one shard's intervals sorted (in one file), its incident versions written;
    returns the fingerprint parts of both."""
    season = job.season
    folder = season.shard_dir("intervals", shard)
    if (folder / _SORTED).exists():  # an earlier attempt sorted them
        intervals = unspill(folder / _SORTED)
    else:
        found = season.read("intervals", shard, dict(INTERVALS))
        intervals = sorted_by(found, "device_id", "start")
        if intervals.height:
            _write(intervals, folder / _SORTED)
    for part in folder.glob(f"part-*{SPILL}"):
        part.unlink()
    if job.policy is None:
        return fingerprint_parts(intervals), fingerprint_parts(
            season.read("versions", shard, dict(INCIDENT_VERSIONS))
        )
    near = season.read("near", shard, dict(HEARTBEATS))
    versions = incident_versions_near(job.incidents, intervals, near, job.policy)
    if versions.height:
        _write(versions, season.shard_dir("versions", shard) / f"part-00000{SPILL}")
    return fingerprint_parts(intervals), fingerprint_parts(versions)


def frozen_files(season: ShardedSeason) -> dict[str, list[Path]]:
    """After `freeze`: the files of the fingerprinted intervals (a shard's each, sorted by
    device and start) and incident versions, by frame name, in shard order."""
    found: dict[str, list[Path]] = {"intervals": [], "incident_versions": []}
    for shard in range(season.shards):
        intervals = season.shard_dir("intervals", shard) / _SORTED
        versions = season.shard_dir("versions", shard) / f"part-00000{SPILL}"
        found["intervals"] += [intervals] if intervals.exists() else []
        found["incident_versions"] += [versions] if versions.exists() else []
    return found


def _write(frame: pl.DataFrame, path: Path) -> None:
    """`frame` to `path` whole or not at all (written aside, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_suffix(".tmp")
    spill(frame, aside, compression=FROZEN)
    aside.replace(path)
