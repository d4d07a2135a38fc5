"""A snapshot's inputs kept exactly as they were fingerprinted (DESIGN 9), so that its audit
bundle can hand them out long after the database has moved on: ingestion changes the
inputs every minute, and a snapshot's fingerprint names only the moment it was read.

A run keeps its frozen inputs under `root/<season>/<input fingerprint>/`, one folder per
distinct fingerprint (a rerun on the same inputs writes nothing), in zstd Parquet:

    intervals/part-NNNNN.parquet          a shard's intervals each, sorted by device, start
    incident_versions/part-NNNNN.parquet  a shard's incident versions each
    incidents.parquet devices.parquet owners.parquet   whole, in a canonical row order

The folder is written aside and renamed into place when whole, so it is complete or
absent. Read back, it gives the frames the fingerprint was made of.
After each run the season keeps only what its snapshots may still need (`still_needed`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import polars as pl

from rewards.core import INCIDENT_VERSIONS, INTERVALS
from rewards.frozen import FROZEN, frozen_files
from rewards.services.computing import ShardedInputs
from rewards.services.exports import fresh_directory
from rewards.services.files import fsync_path
from rewards.services.records import SnapshotRecord
from rewards.services.snapshots import SnapshotError

# the frames a fingerprint covers, and the files that hold them (a folder: its parts)
SPLIT = {"intervals": INTERVALS, "incident_versions": INCIDENT_VERSIONS}
WHOLE = ("incidents", "devices", "owners")
KEPT: Final = FROZEN


def kept_folder(root: Path, season: str, fingerprint: str) -> Path:
    return root / season / fingerprint


def canonical_order(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame`'s rows sorted by every column that sorts (by name, nulls last): the same
    rows give the same file whichever database they were read from."""
    keys = [c for c in sorted(frame.columns) if not isinstance(frame.schema[c], pl.List)]
    return frame.sort(keys, nulls_last=True, maintain_order=True) if keys else frame


def keep_inputs(root: Path, fingerprint: str, inputs: ShardedInputs, season: str) -> Path:
    """Keep a run's frozen inputs (after `fingerprint_by_shard`) under `root`; returns
    their folder. Nothing is written when that fingerprint's inputs are kept already."""
    folder = kept_folder(root, season, fingerprint)
    if folder.is_dir():
        return folder
    try:
        _write_kept(folder, inputs)
    except (SnapshotError, OSError):
        if not folder.is_dir():  # else another process kept the same inputs first
            raise
    return folder


def _write_kept(folder: Path, inputs: ShardedInputs) -> None:
    with fresh_directory(folder) as partial:
        for name, paths in frozen_files(inputs.season).items():
            (partial / name).mkdir()
            for index, path in enumerate(paths):
                part = partial / name / f"part-{index:05d}.parquet"
                shutil.copyfile(path, part)  # written in the kept format (frozen.FROZEN)
        for name, frame in zip(
            WHOLE, (inputs.incidents, inputs.devices, inputs.owners), strict=True
        ):
            canonical_order(frame).write_parquet(partial / f"{name}.parquet", compression=KEPT)
        for written in partial.rglob("*"):  # the folder only syncs its own entries
            fsync_path(written)


def kept_files(folder: Path) -> list[Path]:
    """The files of kept inputs, relative to `folder`, in a stable order."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*.parquet"))


def copy_kept(folder: Path, into: Path) -> list[Path]:
    """Copy the kept inputs in `folder` into the folder `into`; returns what was copied."""
    copied = kept_files(folder)
    for relative in copied:
        (into / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / relative, into / relative)
    return copied


def still_needed(snapshots: Iterable[SnapshotRecord]) -> set[str]:
    """The fingerprints whose inputs a season keeps: those of every snapshot that was
    published (paid, or paid and superseded) and of every draft newer than the newest
    published one (it may yet be). A draft older than that can only be published by an
    explicit rollback, and its audit bundle then needs a rerun of it."""
    snapshots = list(snapshots)
    published = [s.version for s in snapshots if s.status == "published"]
    newest = max(published, default=-1)
    return {s.input_fingerprint for s in snapshots if s.status != "draft" or s.version > newest}


def prune_kept(root: Path, season: str, needed: set[str]) -> list[str]:
    """Remove the season's kept inputs that are not `needed` (and what a crashed run left
    half-written); returns the fingerprints removed. Call it holding the season's lock."""
    folder = root / season
    removed = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.is_dir() and path.name not in needed:
            shutil.rmtree(path)
            removed.append(path.name)
    return removed
