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

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from rewards.core import (
    FINGERPRINT_PARTS,
    LEAF_FORMAT,
    PolicyError,
    SeasonPolicy,
    canonical_csv,
    changed_parts,
    commitment,
    export_rows,
    first_line_difference,
    first_row_difference,
    merkle_root,
    parse_policy,
    payout_leaves,
    rows_in_bucket,
    summarize_rows,
)
from rewards.services.audit_bundle import (
    AUDIT_FORMAT,
    EXPORT,
    INPUTS,
    MANIFEST,
    PARTS,
    POLICY,
    SALTS,
    fingerprint_of,
    input_parts,
    sha256_file,
)
from rewards.services.exports import suppliers_file, with_leaf_hashes
from rewards.services.kept_inputs import kept_inputs
from rewards.services.snapshot_runs import Inputs, code_version


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


def reproduce(directory: Path) -> list[Check]:
    """Every check of the bundle in `directory`, in the order above (NotABundle when it
    is not one). The snapshot reproduces when every judged check is ok."""
    manifest = read_manifest(directory)
    recorded = manifest["recorded"]
    checks = _file_checks(directory, manifest)
    checks.append(Check("code version", None, code_version(), recorded["code_version"]))
    policy, said = _policy(directory, manifest)
    checks.append(said)
    try:
        frames = kept_inputs(directory / INPUTS)
    except (OSError, pl.exceptions.PolarsError) as exc:
        checks.append(
            Check(
                "input fingerprint",
                False,
                "-",
                recorded["input_fingerprint"],
                f"the inputs cannot be read: {exc}",
            )
        )
        return checks
    checks.append(_fingerprint(directory, frames, recorded["input_fingerprint"]))
    if policy is None:
        return checks
    first, last = manifest["epochs"]
    rows = Inputs(
        intervals=frames["intervals"],
        incidents=frames["incidents"],
        versions=frames["incident_versions"],
        devices=frames["devices"],
        owners=frames["owners"],
    ).rows(policy, range(first, last + 1))
    return [*checks, *_outputs(directory, manifest, policy, rows)]


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


def _fingerprint(directory: Path, frames: dict[str, pl.DataFrame], recorded: str) -> Check:
    parts = input_parts(frames)
    found = fingerprint_of(frames, parts)
    if found == recorded:
        return Check("input fingerprint", True, found, recorded)
    try:
        then = pl.read_parquet(directory / PARTS)
    except (OSError, pl.exceptions.PolarsError):
        then = pl.DataFrame(schema={"frame": pl.String(), **FINGERPRINT_PARTS})
    changed = changed_parts(parts, then)
    if changed.is_empty():
        return Check("input fingerprint", False, found, recorded, "a frame's columns or types")
    frame, bucket, now_rows, then_rows = changed.row(0)
    rows = rows_in_bucket(frames[frame], bucket)
    devices = sorted(set(rows.get_column("device_id").to_list())) if "device_id" in rows else []
    whose = f"the rows of device {', '.join(devices[:5])}" if devices else "its rows"
    return Check(
        "input fingerprint",
        False,
        found,
        recorded,
        f"{frame}: {whose} differ from those fingerprinted (bucket {bucket}: "
        f"{now_rows or 0} rows now, {then_rows or 0} then)",
    )


def _outputs(
    directory: Path, manifest: dict[str, Any], policy: SeasonPolicy, rows: pl.DataFrame
) -> list[Check]:
    recorded, decimals = manifest["recorded"], policy.token_decimals
    first, last = manifest["epochs"]
    summary = summarize_rows(
        [rows],
        epochs=range(first, last + 1),
        pool_per_epoch=policy.pool_per_epoch,
        decimals=decimals,
    )
    export = directory / EXPORT
    csv = canonical_csv(rows, decimals)
    checks = [
        _bytes_check(
            "content hash",
            csv,
            export / "device_epochs.csv",
            summary.digest,
            recorded["content_hash"],
        ),
    ]
    suppliers = summary.suppliers
    if recorded["leaf_format"] >= LEAF_FORMAT:
        suppliers = _committed(directory, suppliers)
    leaves = payout_leaves(suppliers, manifest["season"], manifest["version"])
    table = with_leaf_hashes(suppliers, leaves)
    root = merkle_root(leaves)
    checks.append(
        Check(
            "Merkle root",
            root == recorded["merkle_root"],
            root,
            recorded["merkle_root"],
            None
            if root == recorded["merkle_root"]
            else _row_difference(
                table.select("owner_id", "reward", "leaf_hash"),
                export / "suppliers.parquet",
                ["owner_id"],
            ),
        )
    )
    checks.append(_bytes_check("export device_epochs.csv", csv, export / "device_epochs.csv"))
    checks.append(
        _rows_check(
            "export device_epochs.parquet",
            export_rows(rows, decimals),
            export / "device_epochs.parquet",
            ["device_id", "epoch"],
        )
    )
    made = suppliers_file(table, decimals, "suppliers.csv")
    assert isinstance(made, bytes)
    checks.append(_bytes_check("export suppliers.csv", made, export / "suppliers.csv"))
    frame = suppliers_file(table, decimals, "suppliers.parquet")
    assert isinstance(frame, pl.DataFrame)
    checks.append(
        _rows_check("export suppliers.parquet", frame, export / "suppliers.parquet", ["owner_id"])
    )
    checks.append(_export_manifest(export, summary, root))
    return checks


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


def _bytes_check(
    name: str, made: bytes, path: Path, found: str | None = None, recorded: str | None = None
) -> Check:
    """`made` against the file at `path`; by default the check compares the two files'
    hashes, else `found` with `recorded` (the difference is named from the files)."""
    on_disk = path.read_bytes() if path.is_file() else b""
    ok = made == on_disk if found is None else found == recorded
    shown = (
        found or _sha256(made),
        recorded or (_sha256(on_disk) if path.is_file() else "missing"),
    )
    where = None if ok else f"{path.name} {first_line_difference(made, on_disk)}"
    return Check(name, ok, *shown, where)


def _rows_check(name: str, made: pl.DataFrame, path: Path, key: list[str]) -> Check:
    difference = _row_difference(made, path, key)
    return Check(name, difference is None, f"{made.height} rows", "the file's rows", difference)


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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
