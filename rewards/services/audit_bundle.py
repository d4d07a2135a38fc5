"""The audit bundle of a snapshot (DESIGN 9, issue 18): for finance and auditors, never
public. Everything needed to recompute the snapshot without the engine's database or
settings (`rewards snapshot reproduce DIR`, services/reproduce.py):

    manifest.json                  what the snapshot recorded (input fingerprint, policy
                                   hash, content hash, Merkle root, leaf format, code
                                   version, audit-log heads), its policy, and each file's
                                   SHA-256 and size; written last
    policy.json                    the season policy it was computed with
    inputs/                        its inputs exactly as fingerprinted: intervals/ and
                                   incident_versions/ (a part per shard), incidents,
                                   devices (metadata as used), owners (as used), Parquet
    fingerprint_parts.parquet      per input frame and device bucket, the rows and digest
                                   the fingerprint was made of (core/fingerprint.py), so a
                                   changed row can be traced to its devices
    salts.csv                      each paid owner's salt (leaf format 2), so the
                                   commitments and the Merkle root can be recomputed
    export/                        finance's export of the snapshot (services/exports.py)

The inputs come from where the run kept them (services/kept_inputs.py); a bundle is only
written when they still give the snapshot's fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from rewards.core import (
    FINGERPRINT_PARTS,
    LEAF_FORMAT,
    combine_fingerprint,
    commitment,
    csv_bytes,
    fingerprint_parts,
    owner_salt,
)
from rewards.services.exports import export, fresh_directory
from rewards.services.files import fsync_path, json_bytes, sha256_file
from rewards.services.kept_inputs import SPLIT, WHOLE, copy_kept, kept_folder
from rewards.services.records import SnapshotRecord
from rewards.services.snapshots import (
    SnapshotConflict,
    WrongKey,
    current,
    label,
    policy_of,
    stored_suppliers,
)

AUDIT_FORMAT = "ignition-rewards-audit/1"
MANIFEST, POLICY, PARTS, SALTS = (
    "manifest.json",
    "policy.json",
    "fingerprint_parts.parquet",
    "salts.csv",
)
INPUTS, EXPORT = "inputs", "export"


class InputsNotKept(SnapshotConflict):
    """The snapshot's inputs were not kept, or no longer give its fingerprint."""


Pieces = dict[str, tuple[Mapping[str, pl.DataType], list[pl.DataFrame]]]


def kept_fingerprint(folder: Path) -> tuple[str, pl.DataFrame]:
    """The fingerprint of the inputs kept in `folder` (or an audit bundle's inputs) and
    its parts (`parts_table`), read a file at a time: a part file holds whole shards, so
    no bucket spans two."""
    pieces: Pieces = {}
    for name, schema in SPLIT.items():
        files = sorted((folder / name).glob("part-*.parquet"))
        pieces[name] = (schema, [fingerprint_parts(pl.read_parquet(f)) for f in files])
    for name in WHOLE:
        frame = pl.read_parquet(folder / f"{name}.parquet")
        pieces[name] = (frame.schema, [fingerprint_parts(frame)])
    return combine_fingerprint(pieces), parts_table(pieces)


def parts_table(pieces: Pieces) -> pl.DataFrame:
    """Every frame's fingerprint parts in one table: frame, then FINGERPRINT_PARTS, by
    frame and bucket."""
    return pl.concat(
        [
            pl.DataFrame(schema={"frame": pl.String(), **FINGERPRINT_PARTS}),
            *(
                part.select(pl.lit(name).alias("frame"), *FINGERPRINT_PARTS)
                for name, (_schema, found) in pieces.items()
                for part in found
            ),
        ]
    ).sort("frame", "bucket")


def write_audit_bundle(
    engine: Engine, snapshot: SnapshotRecord, *, key: bytes, kept: Path, out: Path
) -> dict[str, Any]:
    """Write `snapshot`'s audit bundle into the new directory `out` (renamed into place
    when whole) from its inputs kept under `kept`; returns the manifest. InputsNotKept
    when they were not kept or were changed since; WrongKey when `key` is not the one
    its commitments were made with."""
    snapshot = current(engine, snapshot)
    folder = kept_folder(kept, snapshot.season, snapshot.input_fingerprint)
    if not folder.is_dir():
        raise InputsNotKept(
            f"{label(snapshot)}: its inputs were not kept in {kept} (it was made before runs "
            "kept them, kept elsewhere, or is a draft older than the published version): it "
            "has no audit bundle; a new run keeps its own inputs"
        )
    found, parts = kept_fingerprint(folder)
    if found != snapshot.input_fingerprint:
        raise InputsNotKept(
            f"{label(snapshot)}: the inputs kept in {folder} no longer give its fingerprint: "
            "they were changed after the run"
        )
    salts = _salts(engine, snapshot, key)
    with fresh_directory(out) as directory:
        copy_kept(folder, directory / INPUTS)
        parts.write_parquet(directory / PARTS)
        (directory / POLICY).write_bytes(json_bytes(policy_of(snapshot)))
        if salts is not None:
            (directory / SALTS).write_bytes(csv_bytes(salts))
        export(engine, snapshot, directory / EXPORT)
        files = {}
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            fsync_path(path)  # on disk before the manifest vouches for it
            name = path.relative_to(directory).as_posix()
            files[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        manifest = _manifest(snapshot, files)
        (directory / MANIFEST).write_bytes(json_bytes(manifest))  # last
    return manifest


def _salts(engine: Engine, snapshot: SnapshotRecord, key: bytes) -> pl.DataFrame | None:
    """Each paid owner's salt (hex) under `key`, checked against the stored commitments;
    None for a snapshot whose leaves name owners (leaf format 1)."""
    if snapshot.leaf_format < LEAF_FORMAT:
        return None
    suppliers = stored_suppliers(engine, snapshot)
    owners, stored = suppliers.get_column("owner_id"), suppliers.get_column("commitment")
    salts = [owner_salt(key, snapshot.season, owner) for owner in owners]
    if any(commitment(s, o) != c for s, o, c in zip(salts, owners, stored, strict=True)):
        raise WrongKey(
            f"{label(snapshot)} was made with another publication key than this engine's: "
            "its owners' salts cannot be written"
        )
    return pl.DataFrame(
        {"owner_id": owners, "salt": [s.hex() for s in salts]},
        schema={"owner_id": pl.String(), "salt": pl.String()},
    )


def _manifest(snapshot: SnapshotRecord, files: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": AUDIT_FORMAT,
        "snapshot": label(snapshot),
        "season": snapshot.season,
        "version": snapshot.version,
        "epochs": [snapshot.epoch_first, snapshot.epoch_last],
        "recorded": {
            "input_fingerprint": snapshot.input_fingerprint,
            "policy_hash": snapshot.policy_hash,
            "content_hash": snapshot.content_hash,
            "merkle_root": snapshot.merkle_root,
            "leaf_format": snapshot.leaf_format,
            "code_version": snapshot.code_version,
        },
        "policy": policy_of(snapshot),
        "audit_head": {"entries": snapshot.audit_entries, "hash": snapshot.audit_hash},
        "published_audit_head": {
            "entries": snapshot.published_audit_entries,
            "hash": snapshot.published_audit_hash,
        },
        "files": files,
    }
