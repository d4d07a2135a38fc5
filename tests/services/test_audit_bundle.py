"""The audit bundle and `reproduce` (issue 18, item 3): a snapshot's inputs kept exactly as
fingerprinted, a bundle that recomputes the snapshot without the database, the same bytes
from SQLite and PostgreSQL, and every kind of edit (an input row, an incident, an
incident version, device metadata, an owner, a policy value, an output file, a salt)
caught and named."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

from rewards.db.engine import make_engine
from rewards.services.audit_bundle import InputsNotKept, write_audit_bundle
from rewards.services.computing import ComputePlan
from rewards.services.exports import EXPORT_FILES
from rewards.services.incidents import declare
from rewards.services.publication import publish
from rewards.services.records import SnapshotRecord
from rewards.services.reproduce import Check, NotABundle, reproduce
from rewards.services.snapshots import WrongKey
from tests.seeded import KEY, LOCK, NOW, declare_forced_upgrade, ingested_copy
from tests.services.test_snapshots import run


def _bundle(engine: Engine, tmp_path: Path) -> tuple[SnapshotRecord, Path]:
    """A published snapshot of the seeded fleet with its forced-upgrade incident, and its
    audit bundle."""
    declare_forced_upgrade(engine)
    made = run(engine, keep=tmp_path / "kept").snapshot
    publish(engine, made, by="finance@test", clock=lambda: NOW, lock_ttl=LOCK)
    write_audit_bundle(engine, made, key=KEY, kept=tmp_path / "kept", out=tmp_path / "bundle")
    return made, tmp_path / "bundle"


def _failed(checks: list[Check]) -> dict[str, str]:
    return {c.name: c.difference or "" for c in checks if c.ok is False}


def test_a_bundle_reproduces_its_snapshot_from_the_files_alone(
    ingested: Engine, tmp_path: Path
) -> None:
    snap, bundle = _bundle(ingested, tmp_path)
    ingested.dispose()  # nothing below reads the database
    checks = {c.name: c for c in reproduce(bundle)}
    assert _failed(list(checks.values())) == {}
    assert checks["input fingerprint"].found == snap.input_fingerprint
    assert checks["content hash"].found == snap.content_hash
    assert checks["Merkle root"].found == snap.merkle_root
    assert checks["policy hash"].found == snap.policy_hash
    for name in EXPORT_FILES:  # every file of the export
        assert checks[f"export {name}"].ok is True
    # by shards of 7 devices, in two worker processes: the same answers
    sharded = reproduce(bundle, ComputePlan(shard_devices=7, workers=2))
    assert [(c.name, c.found) for c in sharded] == [(n, c.found) for n, c in checks.items()]
    inputs = {p.relative_to(bundle).as_posix() for p in (bundle / "inputs").rglob("*.parquet")}
    assert {"inputs/incidents.parquet", "inputs/devices.parquet", "inputs/owners.parquet"} <= inputs
    for name in inputs:  # kept as zstd Parquet, the frozen shard files copied as they are
        meta = pq.ParquetFile(bundle / name).metadata
        codecs = {meta.row_group(g).column(0).compression for g in range(meta.num_row_groups)}
        assert codecs <= {"ZSTD"}, (name, codecs)
    versions = pl.concat(pl.read_parquet(p) for p in (bundle / "inputs").glob("incident_*/*"))
    assert versions.height > 0  # the incident is version-scoped: its versions are inputs too


def _rewrite(path: Path, change: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
    change(pl.read_parquet(path)).write_parquet(path, compression="zstd")


def _first_interval_part(bundle: Path) -> Path:
    return sorted((bundle / "inputs" / "intervals").glob("*.parquet"))[0]


def _edit_interval(bundle: Path) -> str:
    path = _first_interval_part(bundle)
    device = pl.read_parquet(path).get_column("device_id")[0]
    _rewrite(
        path,
        lambda f: f.with_columns(
            end=pl.when(pl.int_range(pl.len()) == 0).then(pl.col("start")).otherwise(pl.col("end"))
        ),
    )
    return f"intervals: the rows of device {device} differ"


def _edit_incident(bundle: Path) -> str:
    _rewrite(
        bundle / "inputs" / "incidents.parquet",
        lambda f: f.with_columns(recovery_deadline_us=pl.col("recovery_deadline_us") * 2),
    )
    return "incidents: its rows differ"


def _set_for_first_device(path: Path, column: str, value: object) -> str:
    """`column` set to `value` in the rows of the file's first device; returns the device."""
    device = pl.read_parquet(path).get_column("device_id")[0]
    _rewrite(path, lambda f: f.with_columns(
        pl.when(pl.col("device_id") == device).then(pl.lit(value)).otherwise(column).alias(column)
    ))  # fmt: skip
    return str(device)


def _edit_version(bundle: Path) -> str:
    path = sorted((bundle / "inputs" / "incident_versions").glob("*.parquet"))[0]
    device = _set_for_first_device(path, "agent_version", "9.9.9")
    return f"incident_versions: the rows of device {device}"


def _edit_metadata(bundle: Path) -> str:
    device = _set_for_first_device(bundle / "inputs" / "devices.parquet", "suspended", True)
    return f"devices: the rows of device {device} differ"


def _edit_owner(bundle: Path) -> str:
    device = _set_for_first_device(bundle / "inputs" / "owners.parquet", "owner_id", "thief")
    return f"owners: the rows of device {device} differ"


def _edit_policy(bundle: Path) -> str:
    policy = json.loads((bundle / "policy.json").read_text())
    policy["pool_per_epoch"] = int(policy["pool_per_epoch"]) + 1
    (bundle / "policy.json").write_text(json.dumps(policy))
    return "pool_per_epoch"


def _edit_output(bundle: Path) -> str:
    path = bundle / "export" / "device_epochs.csv"
    lines = path.read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b",true,", b",false,", 1).replace(b",false,", b",true,", 1)
    if lines[5] == path.read_bytes().split(b"\n")[5]:
        lines[5] += b"0"
    path.write_bytes(b"\n".join(lines))
    return "device_epochs.csv line 6"


def _edit_salt(bundle: Path) -> str:
    path = bundle / "salts.csv"
    lines = path.read_text().splitlines()
    owner = lines[1].split(",")[0]
    lines[1] = f"{owner},{'00' * 32}"
    path.write_text("\n".join(lines) + "\n")
    return f"owner_id {owner}"


EDITS = {
    # edit -> (the file it changes, the check that names it)
    "an interval": (_edit_interval, "inputs/intervals/part-00000.parquet", "input fingerprint"),
    "an incident": (_edit_incident, "inputs/incidents.parquet", "input fingerprint"),
    "an incident version": (
        _edit_version,
        "inputs/incident_versions/part-00000.parquet",
        "input fingerprint",
    ),
    "device metadata": (_edit_metadata, "inputs/devices.parquet", "input fingerprint"),
    "an owner": (_edit_owner, "inputs/owners.parquet", "input fingerprint"),
    "a policy value": (_edit_policy, "policy.json", "policy hash"),
    "an output file": (_edit_output, "export/device_epochs.csv", "export device_epochs.csv"),
    "a salt": (_edit_salt, "salts.csv", "Merkle root"),
}


@pytest.fixture(scope="module")
def sqlite_bundle(databases, seeded, small_fleet, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """One bundle (SQLite) that each edit test copies."""
    engine = make_engine(ingested_copy(databases, seeded, "sqlite", small_fleet))
    try:
        return _bundle(engine, tmp_path_factory.mktemp("audit"))[1]
    finally:
        engine.dispose()


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_any_edit_is_caught_and_named(sqlite_bundle: Path, tmp_path: Path, edit: str) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(sqlite_bundle, bundle)
    change, edited_file, check = EDITS[edit]
    named = change(bundle)
    failed = _failed(reproduce(bundle))
    assert failed.get(f"file {edited_file}") == "SHA-256 differs from the manifest's"
    assert check in failed, failed
    assert named in failed[check], failed[check]


def test_sqlite_and_postgresql_give_the_same_audit_bundle(  # type: ignore[no-untyped-def]
    databases, seeded, small_fleet, sqlite_bundle: Path, tmp_path: Path
) -> None:
    engine = make_engine(ingested_copy(databases, seeded, "postgresql", small_fleet))
    try:
        _, bundle = _bundle(engine, tmp_path)
    finally:
        engine.dispose()
    files = sorted(p.relative_to(bundle) for p in bundle.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(sqlite_bundle) for p in sqlite_bundle.rglob("*") if p.is_file()
    )
    for name in files:
        assert (bundle / name).read_bytes() == (sqlite_bundle / name).read_bytes(), name
    assert _failed(reproduce(bundle)) == {}


@pytest.mark.parametrize("dialect", ["sqlite"])  # rules of files: one database is enough
def test_a_bundle_needs_the_kept_inputs_unchanged_and_the_right_key(
    ingested: Engine, tmp_path: Path
) -> None:
    unkept = run(ingested).snapshot  # a run told not to keep its inputs
    with pytest.raises(InputsNotKept, match="were not kept"):
        write_audit_bundle(ingested, unkept, key=KEY, kept=tmp_path / "kept", out=tmp_path / "a")
    made = run(ingested, keep=tmp_path / "kept", force=True).snapshot
    with pytest.raises(WrongKey):
        write_audit_bundle(
            ingested, made, key=b"\x01" * 32, kept=tmp_path / "kept", out=tmp_path / "b"
        )
    kept = tmp_path / "kept" / made.season / made.input_fingerprint
    _rewrite(kept / "owners.parquet", lambda f: f.head(f.height - 1))
    with pytest.raises(InputsNotKept, match="changed after the run"):
        write_audit_bundle(ingested, made, key=KEY, kept=tmp_path / "kept", out=tmp_path / "c")
    assert not any((tmp_path / n).exists() for n in "abc")
    with pytest.raises(NotABundle):
        reproduce(tmp_path)


@pytest.mark.parametrize("dialect", ["sqlite"])  # rules of files: one database is enough
def test_a_season_keeps_only_the_inputs_its_snapshots_may_still_need(
    ingested: Engine, tmp_path: Path
) -> None:
    kept = tmp_path / "kept"
    v1 = run(ingested, keep=kept).snapshot
    declare_forced_upgrade(ingested)
    v2 = run(ingested, keep=kept).snapshot
    (kept / v2.season / "left-by-a-crashed-run").mkdir()
    folders = lambda: {p.name for p in (kept / v2.season).iterdir()}  # noqa: E731
    assert {v1.input_fingerprint, v2.input_fingerprint} <= folders()
    publish(ingested, v2, by="finance@test", clock=lambda: NOW, lock_ttl=LOCK)
    start = NOW - timedelta(days=8)
    declare(ingested, incident_id="later", start=start, end=start + timedelta(minutes=30),
            recovery_deadline=timedelta(hours=1), scope={"all": True}, reason="a short one",
            by="admin@test", now=NOW)  # fmt: skip
    v3 = run(ingested, keep=kept).snapshot
    # v1 is a draft older than the published v2: only a rollback could publish it
    assert folders() == {v2.input_fingerprint, v3.input_fingerprint}
    write_audit_bundle(ingested, v2, key=KEY, kept=kept, out=tmp_path / "v2")
    with pytest.raises(InputsNotKept):
        write_audit_bundle(ingested, v1, key=KEY, kept=kept, out=tmp_path / "v1")
