"""Reproducing a snapshot from its audit bundle alone (DESIGN 9, `rewards snapshot
reproduce DIR`): no database, no settings, no key. Every check says match or mismatch,
and a mismatch names the first thing that differs:

* every file against the bundle's manifest (SHA-256 and size);
* the policy: policy.json's hash against the recorded one (a changed key is named);
* the input fingerprint of the inputs as they are in the bundle (a changed row is traced
  to the devices of its fingerprint bucket);
* the content hash of the device-epoch rows recomputed from those inputs and that policy
  (the first differing line of the canonical CSV is named);
* the Merkle root of the payouts recomputed with the owners' salts (the first differing
  supplier is named);
* each export file recomputed (the CSVs byte for byte, the Parquet files row for row, the
  export's manifest by its totals).

The code version is reported beside them: the same bundle reproduced by other code may
still match, and says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from rewards.compute import ShardedSeason, compute, snapshot_rows_by_shard, split_inputs
from rewards.core import (
    FINGERPRINT_PARTS,
    INCIDENT_VERSIONS,
    INTERVALS,
    LEAF_FORMAT,
    FrameSchemaError,
    PolicyError,
    RowsSummary,
    SeasonPolicy,
    canonical_csv_parts,
    changed_parts,
    combine_fingerprint,
    commitment,
    content_hash,
    empty,
    export_rows,
    fingerprint_parts,
    first_line_difference,
    first_row_difference,
    lines_of,
    merkle_root,
    parse_policy,
    payout_leaves,
    rows_in_bucket,
    summarize_rows,
)
from rewards.executors import Executor
from rewards.frozen import freeze_parts
from rewards.services.audit_bundle import (
    AUDIT_FORMAT,
    EXPORT,
    INPUTS,
    MANIFEST,
    PARTS,
    POLICY,
    SALTS,
    Pieces,
    parts_table,
)
from rewards.services.computing import ComputePlan
from rewards.services.exports import suppliers_file, with_leaf_hashes
from rewards.services.files import sha256_file
from rewards.services.kept_inputs import SPLIT, WHOLE
from rewards.services.snapshot_runs import code_version


class NotABundle(ValueError):
    """The directory is not an audit bundle this engine reads."""


@dataclass(frozen=True)
class Check:
    """One thing recomputed and compared with what the bundle recorded; `ok` None for
    what is reported, not judged (the code version)."""

    name: str
    ok: bool | None
    found: str
    recorded: str
    difference: str | None = None


def read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        why = "has no" if isinstance(exc, FileNotFoundError) else "has no readable"
        raise NotABundle(f"{directory} is not an audit bundle: it {why} {MANIFEST}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != AUDIT_FORMAT:
        raise NotABundle(f"{directory} is not an audit bundle of format {AUDIT_FORMAT}")
    return manifest


def reproduce(directory: Path, plan: ComputePlan | None = None) -> list[Check]:
    """Every check of the bundle in `directory`, in the order above (NotABundle when it
    is not one). The snapshot reproduces when every judged check is ok. It is recomputed
    by device shard under `plan` (default: 50,000 devices a shard, in this process), in
    a work folder removed afterwards: memory is a shard's, not the season's."""
    manifest = read_manifest(directory)
    recorded = manifest["recorded"]
    checks = _file_checks(directory, manifest)
    checks.append(Check("code version", None, code_version(), recorded["code_version"]))
    policy, said = _policy(directory, manifest)
    checks.append(said)
    plan = plan or ComputePlan()
    with plan.work("rewards-reproduce-") as work, plan.executor() as executor:
        try:
            small = {
                name: pl.read_parquet(directory / INPUTS / f"{name}.parquet") for name in WHOLE
            }
            season = _split(directory / INPUTS, small, work, plan)
            found, parts = _fingerprint(season, small, executor)
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            checks.append(Check("input fingerprint", False, "-", recorded["input_fingerprint"],
                                f"the inputs cannot be read: {exc}"))  # fmt: skip
            return checks
        checks.append(_fingerprint_check(directory, small, found, parts, recorded))
        if policy is None:
            return checks
        first, last = manifest["epochs"]
        try:
            compute(season, policy, incidents=small["incidents"], executor=executor)
            snapshot_rows_by_shard(season, policy, range(first, last + 1), executor=executor)
        except (FrameSchemaError, ValueError, pl.exceptions.PolarsError) as exc:
            checks.append(Check("content hash", False, "-", recorded["content_hash"],
                                f"the inputs cannot be computed: {exc}"))  # fmt: skip
            return checks
        return [*checks, *_outputs(directory, manifest, policy, season)]


def _split(
    inputs: Path, small: dict[str, pl.DataFrame], work: Path, plan: ComputePlan
) -> ShardedSeason:
    """The bundle's inputs split by device shard under `work`, read a batch at a time."""
    scans = {}
    for name, schema in SPLIT.items():
        parts = sorted((inputs / name).glob("part-*.parquet"))
        scans[name] = pl.scan_parquet(parts) if parts else empty(schema).lazy()
    devices = scans["intervals"].select(pl.col("device_id").n_unique()).collect().item()
    shards = plan.shards(max(devices, small["devices"].get_column("device_id").n_unique()))
    return split_inputs(
        work / "season",
        shards,
        scans["intervals"],
        devices=small["devices"].lazy(),
        incident_versions=scans["incident_versions"],
        owners=small["owners"].lazy(),
    )


def _fingerprint(
    season: ShardedSeason, small: dict[str, pl.DataFrame], executor: Executor
) -> tuple[str, pl.DataFrame]:
    """The inputs' fingerprint, and its parts by frame and bucket."""
    intervals, versions = freeze_parts(season, None, incidents=small["incidents"],
                                       executor=executor)  # fmt: skip
    pieces: Pieces = {
        "intervals": (INTERVALS, intervals),
        "incident_versions": (INCIDENT_VERSIONS, versions),
        **{name: (frame.schema, [fingerprint_parts(frame)]) for name, frame in small.items()},
    }
    return combine_fingerprint(pieces), parts_table(pieces)


def _file_checks(directory: Path, manifest: dict[str, Any]) -> list[Check]:
    listed: dict[str, dict[str, Any]] = manifest["files"]
    present = {
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p != directory / MANIFEST
    }
    checks = []
    for name, expected in sorted(listed.items()):
        path = directory / name
        found = sha256_file(path) if path.is_file() else "missing"
        difference = None if found == expected["sha256"] else "SHA-256 differs from the manifest's"
        checks.append(
            Check(f"file {name}", difference is None, found, expected["sha256"], difference)
        )
    for extra in sorted(present - set(listed)):
        checks.append(
            Check(
                f"file {extra}", False, "present", "not listed", "a file the manifest does not list"
            )
        )
    return checks


def _policy(directory: Path, manifest: dict[str, Any]) -> tuple[SeasonPolicy | None, Check]:
    recorded_hash, recorded = manifest["recorded"]["policy_hash"], manifest["policy"]
    try:
        given = json.loads((directory / POLICY).read_text())
        policy = parse_policy(given)
    except (OSError, ValueError, PolicyError) as exc:
        return None, Check("policy hash", False, "-", recorded_hash, f"{POLICY}: {exc}")
    keys = sorted(set(given) | set(recorded))
    changed = [k for k in keys if given.get(k) != recorded.get(k)]
    difference = None
    if policy.policy_hash != recorded_hash:
        named = ", ".join(f"{k}: {given.get(k)!r} (recorded {recorded.get(k)!r})" for k in changed)
        difference = f"{POLICY} differs from the recorded policy: {named or 'same keys'}"
    return policy, Check(
        "policy hash", difference is None, policy.policy_hash, recorded_hash, difference
    )


def _fingerprint_check(
    directory: Path,
    small: dict[str, pl.DataFrame],
    found: str,
    parts: pl.DataFrame,
    recorded: dict[str, Any],
) -> Check:
    """The fingerprint against the recorded one; a mismatch names the first changed
    part's devices (from the bundle's record of the parts it was made of)."""
    expected = recorded["input_fingerprint"]
    if found == expected:
        return Check("input fingerprint", True, found, expected)
    try:
        then = pl.read_parquet(directory / PARTS)
    except (OSError, pl.exceptions.PolarsError):
        then = pl.DataFrame(schema={"frame": pl.String(), **FINGERPRINT_PARTS})
    changed = changed_parts(parts, then)
    if changed.is_empty():
        return Check("input fingerprint", False, found, expected, "a frame's columns or types")
    frame, bucket, now_rows, then_rows = changed.row(0)
    if frame in small:
        rows = rows_in_bucket(small[frame], bucket)
    else:  # a part file at a time
        files = sorted((directory / INPUTS / frame).glob("part-*.parquet"))
        rows = pl.concat([rows_in_bucket(pl.read_parquet(f), bucket) for f in files])
    devices = sorted(set(rows.get_column("device_id").to_list())) if "device_id" in rows else []
    whose = f"the rows of device {', '.join(devices[:5])}" if devices else "its rows"
    return Check("input fingerprint", False, found, expected,
                 f"{frame}: {whose} differ from those fingerprinted (bucket {bucket}: "
                 f"{now_rows or 0} rows now, {then_rows or 0} then)")  # fmt: skip


def _outputs(
    directory: Path, manifest: dict[str, Any], policy: SeasonPolicy, season: ShardedSeason
) -> list[Check]:
    """The recomputed rows (read a device range at a time) against what was recorded."""
    recorded, decimals = manifest["recorded"], policy.token_decimals
    first, last = manifest["epochs"]
    summary = summarize_rows(season.rows_in_order(), epochs=range(first, last + 1),
                             pool_per_epoch=policy.pool_per_epoch, decimals=decimals)  # fmt: skip
    export = directory / EXPORT
    csv = export / "device_epochs.csv"
    written = sha256_file(csv) if csv.is_file() else "missing"

    @cache
    def csv_difference() -> str:  # one more pass over the rows, only on a mismatch
        made = lines_of(canonical_csv_parts(season.rows_in_order(), decimals))
        return f"{csv.name} {first_line_difference(made, _lines(csv))}"

    def csv_check(name: str, recorded: str) -> Check:
        same = summary.digest == recorded
        return Check(name, same, summary.digest, recorded, None if same else csv_difference())

    return [
        csv_check("content hash", recorded["content_hash"]),
        *_payout_checks(directory, manifest, summary, decimals),
        csv_check("export device_epochs.csv", written),
        _rows_check(season, decimals, export / "device_epochs.parquet"),
    ]


def _payout_checks(
    directory: Path, manifest: dict[str, Any], summary: RowsSummary, decimals: int
) -> list[Check]:
    """The Merkle root and the suppliers files (one row per owner: small)."""
    recorded, export = manifest["recorded"], directory / EXPORT
    suppliers = summary.suppliers
    if recorded["leaf_format"] >= LEAF_FORMAT:
        suppliers = _committed(directory, suppliers)
    leaves = payout_leaves(suppliers, manifest["season"], manifest["version"])
    table = with_leaf_hashes(suppliers, leaves)
    root = merkle_root(leaves)
    parquet = export / "suppliers.parquet"
    by_owner = None
    if root != recorded["merkle_root"]:
        by_owner = _row_difference(table.select("owner_id", "reward", "leaf_hash"), parquet,
                                   ["owner_id"])  # fmt: skip
    made = suppliers_file(table, decimals, "suppliers.csv")
    frame = suppliers_file(table, decimals, "suppliers.parquet")
    assert isinstance(made, bytes) and isinstance(frame, pl.DataFrame)
    on_disk = export / "suppliers.csv"
    written = on_disk.read_bytes() if on_disk.is_file() else b""
    csv_difference = None
    if made != written:
        said = first_line_difference(lines_of([made]), lines_of([written]))
        csv_difference = f"suppliers.csv {said}"
    rows_difference = _row_difference(frame, parquet, ["owner_id"])
    return [
        Check("Merkle root", by_owner is None and root == recorded["merkle_root"], root,
              recorded["merkle_root"], by_owner),
        Check("export suppliers.csv", csv_difference is None, content_hash(made),
              content_hash(written), csv_difference),
        Check("export suppliers.parquet", rows_difference is None, f"{frame.height} rows",
              "the file's rows", rows_difference),
        _export_manifest(export, summary, root),
    ]  # fmt: skip


def _lines(path: Path) -> Iterator[bytes]:
    """The lines of the file at `path` without their ends (none when it is missing)."""
    if path.is_file():
        with path.open("rb") as handle:
            for line in handle:
                yield line.rstrip(b"\n")


def _committed(directory: Path, suppliers: pl.DataFrame) -> pl.DataFrame:
    """`suppliers` with each owner's commitment from the bundle's salts (an owner without
    a salt gets none, and so a leaf that cannot match)."""
    try:
        schema = {"owner_id": pl.String(), "salt": pl.String()}
        salts = dict(pl.read_csv(directory / SALTS, schema=schema).iter_rows())
    except (OSError, pl.exceptions.PolarsError):
        salts = {}
    made = []
    for owner in suppliers.get_column("owner_id"):
        try:
            made.append(commitment(bytes.fromhex(salts[owner]), owner))
        except (KeyError, ValueError, TypeError):
            made.append(f"no salt for {owner}")
    return suppliers.with_columns(commitment=pl.Series(made, dtype=pl.String))


def _rows_check(season: ShardedSeason, decimals: int, path: Path) -> Check:
    """The export's Parquet rows against the recomputed ones, a device range at a time."""
    name = f"export {path.name}"
    try:
        scan = pl.scan_parquet(path)
        height = scan.select(pl.len()).collect().item()
    except (OSError, pl.exceptions.PolarsError) as exc:
        return Check(name, False, "-", "-", f"{path.name}: cannot be read ({exc})")
    offset = 0
    for frame in season.rows_in_order():
        made = export_rows(frame, decimals)
        on_disk = scan.slice(offset, made.height).collect()
        found = first_row_difference(
            made,
            on_disk.select(made.columns) if set(made.columns) <= set(on_disk.columns) else on_disk,
            ["device_id", "epoch"],
        )
        if found is not None:
            return Check(name, False, f"{offset + made.height} rows", f"{height} rows",
                         f"{path.name} {found}")  # fmt: skip
        offset += made.height
    if offset != height:
        return Check(name, False, f"{offset} rows", f"{height} rows",
                     f"{path.name} has {height - offset:+} rows more than recomputed")  # fmt: skip
    return Check(name, True, f"{offset} rows", f"{height} rows")


def _row_difference(made: pl.DataFrame, path: Path, key: list[str]) -> str | None:
    try:
        on_disk = pl.read_parquet(path).select(made.columns)
    except (OSError, pl.exceptions.PolarsError) as exc:
        return f"{path.name}: cannot be read ({exc})"
    found = first_row_difference(made, on_disk, key)
    return None if found is None else f"{path.name} {found}"


def _export_manifest(export: Path, summary: Any, root: str) -> Check:
    """The export manifest's recomputable figures: content hash, root, rows and totals."""
    try:
        written = json.loads((export / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        return Check("export manifest.json", False, "-", "-", f"cannot be read ({exc})")
    figures = {
        "content_hash": summary.digest,
        "merkle_root": root,
        "rows": {"device_epochs": summary.rows, "suppliers": summary.suppliers.height},
        "epochs_totals": summary.totals.to_dicts(),
    }
    changed = [k for k, v in figures.items() if written.get(k) != v]
    return Check(
        "export manifest.json",
        not changed,
        "recomputed totals",
        "the file's",
        f"{', '.join(changed)} differ" if changed else None,
    )
