"""Finance's files (DESIGN 5): a snapshot's export (device-epochs and suppliers as CSV and
Parquet, and a manifest of SHA-256s written last), one file of it, diffs and adjustments as
tables, and the check of an export against its manifest.

Every file is written to a temporary directory renamed into place when whole, so an export
is complete or absent. Nothing is written unless the stored rows hash to the snapshot's
content hash and the stored payouts give its Merkle root.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source
from sqlalchemy import Engine

from rewards.core import (
    CSV_INJECTION,
    SNAPSHOT_ROWS,
    Payout,
    canonical_csv_pairs,
    csv_bytes,
    empty,
    export_rows,
    leaf_hash,
    merkle_root,
    payout_leaves,
    reward_decimal,
)
from rewards.services.files import fsync_path, sha256_file
from rewards.services.records import SnapshotRecord
from rewards.services.snapshots import (
    Diff,
    SnapshotConflict,
    SnapshotError,
    current,
    label,
    policy_of,
    stored_epochs,
    stored_row_parts,
    stored_suppliers,
    token_decimals,
)

MANIFEST = "manifest.json"
EXPORT_FILES = {
    "device_epochs.csv": "text/csv",
    "device_epochs.parquet": "application/vnd.apache.parquet",
    "suppliers.csv": "text/csv",
    "suppliers.parquet": "application/vnd.apache.parquet",
    MANIFEST: "application/json",
}
ROW_FILES = ("device_epochs.csv", "device_epochs.parquet")
DELTAS = ["reward_before", "reward_after", "delta"]


def write_tables(
    frame: pl.DataFrame, directory: Path, name: str, decimals: int, amounts: list[str]
) -> None:
    """`frame` as NAME.csv and NAME.parquet in `directory`, with a decimal column beside
    each amount column; CSV cells that could start a formula are neutralised, Parquet
    keeps the raw values."""
    table = _with_decimals(frame, decimals, amounts)
    (directory / f"{name}.csv").write_bytes(csv_bytes(table))
    table.write_parquet(directory / f"{name}.parquet")


def _with_decimals(frame: pl.DataFrame, decimals: int, amounts: list[str]) -> pl.DataFrame:
    return frame.with_columns(reward_decimal(c, decimals).alias(f"{c}_decimal") for c in amounts)


@contextmanager
def fresh_directory(out: Path) -> Iterator[Path]:
    """A temporary directory renamed to `out` when the block succeeds; `out` must not
    exist yet (or be empty), so an export is whole or absent, never half-written.

    Before the rename every file in it (the block may already have synced some) and then
    the directory itself are fsynced; after it, the parent, so the rename is durable too.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SnapshotError(f"{out} already exists and is not empty: choose a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield partial
        for path in sorted(partial.iterdir(), key=lambda p: p.name == MANIFEST):
            fsync_path(path)
        fsync_path(partial)
        if out.exists():
            out.rmdir()
        partial.rename(out)
        fsync_path(out.parent)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


@dataclass(frozen=True)
class _Verified:
    """A snapshot's stored payouts, checked against its Merkle root (its rows are checked
    against the content hash as they are written: `_write_rows`)."""

    snapshot: SnapshotRecord
    decimals: int
    suppliers: pl.DataFrame  # with each payout's leaf hash


def _verified(engine: Engine, snapshot: SnapshotRecord) -> _Verified:
    snapshot = current(engine, snapshot)
    suppliers = stored_suppliers(engine, snapshot)
    leaves = payout_leaves(suppliers, snapshot.season, snapshot.version)
    if merkle_root(leaves) != snapshot.merkle_root:
        raise SnapshotConflict(
            f"{label(snapshot)}: the stored payouts do not match the Merkle root"
        )
    return _Verified(snapshot, token_decimals(snapshot), with_leaf_hashes(suppliers, leaves))


def with_leaf_hashes(suppliers: pl.DataFrame, leaves: list[Payout]) -> pl.DataFrame:
    """`suppliers` (in `payout_leaves` order) with each payout's leaf hash, as the
    suppliers files show them."""
    hashes = [leaf_hash(leaf).hex() for leaf in leaves]
    return suppliers.with_columns(leaf_hash=pl.Series(hashes, dtype=pl.String))


def suppliers_file(suppliers: pl.DataFrame, decimals: int, name: str) -> bytes | pl.DataFrame:
    """What the suppliers file `name` of an export holds, from `with_leaf_hashes`: the CSV's
    bytes, or the Parquet file's frame."""
    table = _with_decimals(suppliers, decimals, ["reward"])
    if name == "suppliers.csv":
        return csv_bytes(table)
    if name == "suppliers.parquet":
        return table
    raise SnapshotError(f"no export file {name!r}")


def _write_rows(engine: Engine, content: _Verified, directory: Path, names: set[str]) -> int:
    """The device-epoch files among `names` written into `directory` a stored part at a
    time, in one pass (a fleet's rows are never held whole, nor read twice); returns the
    rows. The canonical CSV's SHA-256 must be the snapshot's content hash, or nothing is
    left behind."""
    snapshot, decimals = content.snapshot, content.decimals
    digest, counted, failed = hashlib.sha256(), [0], []
    csv_path, parquet_path = directory / "device_epochs.csv", directory / "device_epochs.parquet"
    partial = {path: path.with_name(path.name + ".partial") for path in (csv_path, parquet_path)}
    try:
        with partial[csv_path].open("wb") as csv:

            def exported(*_pushdown: object) -> Iterator[pl.DataFrame]:
                """The parts as export rows, the canonical CSV hashed and written on the way
                (an error is kept for after the Parquet writer has stopped)."""
                try:
                    parts = stored_row_parts(engine, snapshot)
                    for table, data in canonical_csv_pairs(parts, decimals):
                        digest.update(data)
                        if csv_path.name in names:
                            csv.write(data)
                        if table is not None:
                            counted[0] += table.height
                            yield table
                except Exception as exc:
                    failed.append(exc)

            if parquet_path.name in names:
                schema = export_rows(empty(SNAPSHOT_ROWS), decimals).schema
                register_io_source(exported, schema=schema).sink_parquet(partial[parquet_path])
            else:
                for _ in exported():
                    pass
        if failed:
            raise failed[0]
        if digest.hexdigest() != snapshot.content_hash:
            raise SnapshotConflict(
                f"{label(snapshot)}: the stored rows do not hash to the snapshot's content "
                f"hash ({digest.hexdigest()} != {snapshot.content_hash}); not exporting"
            )
        for path in (csv_path, parquet_path):
            if path.name in names:
                partial[path].rename(path)
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
    return counted[0]


def _write_file(content: _Verified, name: str, directory: Path) -> None:
    """One suppliers file of the export into `directory`."""
    made = suppliers_file(content.suppliers, content.decimals, name)
    if isinstance(made, bytes):
        (directory / name).write_bytes(made)
    else:
        made.write_parquet(directory / name)


def export(engine: Engine, snapshot: SnapshotRecord, out: Path) -> dict[str, Any]:
    """Write the finance export of `snapshot` to directory `out`; returns the manifest.

    device_epochs.csv is the canonical export: its SHA-256 is the snapshot's content hash,
    checked as it is written; the export is renamed into place only when it matches.
    """
    content = _verified(engine, snapshot)
    with fresh_directory(out) as directory:
        rows = _write_rows(engine, content, directory, set(ROW_FILES))
        for name in EXPORT_FILES:
            if name != MANIFEST and name not in ROW_FILES:
                _write_file(content, name, directory)
        files = {}
        for path in sorted(directory.iterdir()):
            fsync_path(path)  # the data is on disk before a manifest can vouch for it
            files[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        manifest = _manifest(engine, content, rows, files)
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")  # last
    return manifest


def export_file(engine: Engine, snapshot: SnapshotRecord, name: str, directory: Path) -> Path:
    """Only the export file `name` of `snapshot`, written into `directory` (the manifest
    needs every file's hash, so it makes the whole export); returns its path."""
    if name == MANIFEST:
        export(engine, snapshot, directory / "export")
        return directory / "export" / MANIFEST
    if name not in EXPORT_FILES:
        raise SnapshotError(f"no export file {name!r}")
    content = _verified(engine, snapshot)
    if name in ROW_FILES:
        _write_rows(engine, content, directory, {name})
    else:
        _write_file(content, name, directory)
    return directory / name


def _manifest(
    engine: Engine, content: _Verified, rows: int, files: dict[str, Any]
) -> dict[str, Any]:
    snapshot, suppliers = content.snapshot, content.suppliers
    return {
        "snapshot": label(snapshot),
        "season": snapshot.season,
        "version": snapshot.version,
        "status": snapshot.status,
        "epochs": [snapshot.epoch_first, snapshot.epoch_last],
        "policy_hash": snapshot.policy_hash,
        "policy": policy_of(snapshot),
        "input_fingerprint": snapshot.input_fingerprint,
        "code_version": snapshot.code_version,
        "content_hash": snapshot.content_hash,
        "merkle_root": snapshot.merkle_root,
        # the audit log's head after the run and the publication (DESIGN 9): a log cut
        # short or rewound later no longer holds these entries
        "audit_head": {"entries": snapshot.audit_entries, "hash": snapshot.audit_hash},
        "published_audit_head": {
            "entries": snapshot.published_audit_entries,
            "hash": snapshot.published_audit_hash,
        },
        "token_decimals": content.decimals,
        "rows": {"device_epochs": rows, "suppliers": suppliers.height},
        "totals": {
            "pool": snapshot.total_pool,
            "paid": snapshot.total_paid,
            "paid_to_suppliers": int(suppliers.get_column("reward").sum()),
            "unassigned": snapshot.total_unassigned,
        },
        "epochs_totals": stored_epochs(engine, snapshot).to_dicts(),
        "files": files,
        "csv_injection": CSV_INJECTION,  # CSV cells only; Parquet keeps raw values
    }


def write_diff(result: Diff, out: Path) -> None:
    """A diff's full tables (device-epochs and suppliers, CSV and Parquet) into new `out`."""
    decimals = token_decimals(result.after)
    with fresh_directory(out) as partial:
        write_tables(result.rows, partial, "device_epochs", decimals, DELTAS)
        write_tables(result.suppliers, partial, "suppliers", decimals, DELTAS)


ADJUSTED = ["paid", "due", "adjustment"]


def write_adjustments(table: pl.DataFrame, decimals: int, out: Path) -> None:
    """Finance's adjustments table as adjustments.csv and .parquet into new `out`."""
    with fresh_directory(out) as partial:
        write_tables(table, partial, "adjustments", decimals, ADJUSTED)


def adjustments_csv(table: pl.DataFrame, decimals: int) -> bytes:
    """The adjustments.csv `write_adjustments` writes (amounts also in tokens), as bytes."""
    return csv_bytes(_with_decimals(table, decimals, ADJUSTED))


def changes_csv(rows: pl.DataFrame, decimals: int) -> bytes:
    """Changed device-epochs (`diff_rows` output) as CSV, amounts also in tokens: the
    download of a diff's or an impact preview's changes."""
    return csv_bytes(_with_decimals(rows, decimals, DELTAS))


def verify_export(directory: Path) -> list[str]:
    """Problems found checking an export against its manifest (none: it verifies).

    Checks every file's SHA-256 and size, that device_epochs.csv hashes to the content
    hash, that each epoch's paid + nothing else reconciles with its pool, and that the
    suppliers' leaves give the Merkle root.
    """
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        return [f"{MANIFEST}: {exc}"]
    problems = []
    for name, expected in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != expected["sha256"] or path.stat().st_size != expected["bytes"]:
            problems.append(f"{name}: SHA-256 or size differs from the manifest")
    if problems:
        return problems
    if manifest["files"]["device_epochs.csv"]["sha256"] != manifest["content_hash"]:
        problems.append("device_epochs.csv: does not hash to the snapshot's content hash")
    for epoch in manifest["epochs_totals"]:
        if epoch["eligible_devices"] and epoch["paid"] != epoch["pool"]:
            problems.append(f"epoch {epoch['epoch']}: paid {epoch['paid']} != pool {epoch['pool']}")
    rows = pl.read_parquet(directory / "device_epochs.parquet")
    paid = dict(rows.group_by("epoch").agg(pl.col("reward").sum()).iter_rows())
    listed = {e["epoch"]: e["paid"] for e in manifest["epochs_totals"]}
    if {epoch: paid.get(epoch, 0) for epoch in listed} != listed or not set(paid) <= set(listed):
        problems.append("device_epochs: rewards per epoch differ from the manifest's totals")
    suppliers = pl.read_parquet(directory / "suppliers.parquet")
    leaves = payout_leaves(suppliers, manifest["season"], manifest["version"])
    if merkle_root(leaves) != manifest["merkle_root"]:
        problems.append("suppliers: the payouts do not give the manifest's Merkle root")
    if int(suppliers.get_column("reward").sum()) != manifest["totals"]["paid_to_suppliers"]:
        problems.append("suppliers: rewards do not sum to the manifest's total")
    return problems
