"""Finance exports are safe to open and safe on disk: CSV cells that a spreadsheet would
run as formulas are neutralised (OWASP; Parquet keeps raw values), and an export is
fsynced file by file, then its folder, before it is renamed into place, manifest last."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, text

from rewards.core import check_proof_document
from rewards.db.engine import unit_of_work
from rewards.services.exports import export, verify_export, write_tables
from rewards.services.snapshot_runs import run_snapshot
from rewards.services.snapshots import proof
from tests.seeded import KEY, LOCK, NOW, POLICY, WEEK

# Owner IDs a hostile registry could have delivered before identifiers were checked at
# ingest (or an old row): exports must be safe regardless.
HOSTILE = {
    "@SUM(1+1)": "'@SUM(1+1)",
    "+cmd": "'+cmd",
    "=1+2": "'=1+2",
    "-1": "-1",  # a number: left alone
    "-cmd": "'-cmd",
    "\tcmd": "'\tcmd",
    "\rcmd": "'\rcmd",
}


def hostile_owners(engine: Engine) -> None:
    """Give the first suppliers' devices hostile owner IDs, straight in the database."""
    with unit_of_work(engine) as session:
        db = session.connection()
        owners = db.execute(text("SELECT owner_id FROM suppliers ORDER BY owner_id")).scalars()
        for old, new in zip(list(owners), HOSTILE, strict=False):
            db.execute(
                text("INSERT INTO suppliers (owner_id, first_seen_at) VALUES (:o, :t)"),
                {"o": new, "t": NOW},
            )
            db.execute(
                text("UPDATE device_metadata SET owner_id = :new WHERE owner_id = :old"),
                {"new": new, "old": old},
            )


def snapshot(engine: Engine):  # type: ignore[no-untyped-def]
    return run_snapshot(
        engine,
        POLICY,
        epochs=WEEK,
        trigger="manual",
        triggered_by="admin",
        reason="test",
        clock=lambda: NOW,
        key=KEY,
        lock_ttl=LOCK,
        force=True,
    ).snapshot


def csv_column(path: Path, column: str) -> list[str]:
    with path.open(newline="") as handle:
        return [row[column] for row in csv.DictReader(handle)]


def test_csv_cells_that_start_a_formula_are_neutralised_and_parquet_keeps_raw_values(
    ingested: Engine, tmp_path: Path
) -> None:
    hostile_owners(ingested)
    snap = snapshot(ingested)
    manifest = export(ingested, snap, tmp_path / "export")
    folder = tmp_path / "export"
    for name in ("suppliers", "device_epochs"):
        cells = set(csv_column(folder / f"{name}.csv", "owner_id"))
        assert set(HOSTILE.values()) <= cells, name
        assert not {"@SUM(1+1)", "+cmd", "=1+2", "-cmd", "\tcmd", "\rcmd"} & cells, name
        raw = set(pl.read_parquet(folder / f"{name}.parquet").get_column("owner_id"))
        assert set(HOSTILE) <= raw, name
    assert manifest["csv_injection"] == "neutralised (OWASP)"
    assert json.loads((folder / "manifest.json").read_text())["csv_injection"] == (
        "neutralised (OWASP)"
    )
    assert verify_export(folder) == []
    hostile = proof(ingested, snap, "@SUM(1+1)", KEY)  # raw in the proof, hashed in the leaf
    assert hostile["owner_id"] == "@SUM(1+1)" and check_proof_document(hostile)


def test_adjustments_and_diff_tables_neutralise_formula_cells_too(tmp_path: Path) -> None:
    table = pl.DataFrame(
        {
            "owner_id": list(HOSTILE),
            "paid": [1] * len(HOSTILE),
            "due": [-2] * len(HOSTILE),
            "adjustment": [-3] * len(HOSTILE),
            "direction": ["overpaid"] * len(HOSTILE),
        }
    )
    write_tables(table, tmp_path, "adjustments", 6, ["paid", "due", "adjustment"])
    path = tmp_path / "adjustments.csv"
    assert csv_column(path, "owner_id") == list(HOSTILE.values())
    assert set(csv_column(path, "adjustment")) == {"-3"}  # numbers stay numbers
    assert set(csv_column(path, "adjustment_decimal")) == {"-0.000003"}
    raw = pl.read_parquet(tmp_path / "adjustments.parquet")
    assert raw.get_column("owner_id").to_list() == list(HOSTILE)


def test_an_export_is_fsynced_file_by_file_then_its_folder_before_the_rename_manifest_last(
    ingested: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A spy is the honest test here: what matters is the order of real fsyncs, which no
    # result on a healthy disk shows. Each call records what it synced and what existed.
    out = tmp_path / "export"
    synced: list[tuple[str, bool, bool]] = []  # (path, manifest written yet, out exists)
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        path = Path(f"/proc/self/fd/{fd}").readlink()
        manifest = path / "manifest.json" if path.is_dir() else path.parent / "manifest.json"
        synced.append((str(path), manifest.exists(), out.exists()))
        real_fsync(fd)

    snap = snapshot(ingested)
    monkeypatch.setattr(os, "fsync", spy)
    export(ingested, snap, out)
    monkeypatch.setattr(os, "fsync", real_fsync)

    names = sorted(p.name for p in out.iterdir())
    partial = Path(synced[0][0]).parent
    assert partial.name.startswith(".export.") and not partial.exists()
    files: dict[str, tuple[bool, bool]] = {}  # each file's first fsync
    for p, written, done in synced:
        if Path(p).parent == partial:
            files.setdefault(Path(p).name, (written, done))
    assert set(files) == set(names)
    data = [n for n in names if n != "manifest.json"]
    assert all(files[n] == (False, False) for n in data)  # before the manifest existed
    paths = [p for p, _, _ in synced]  # index(): each path's first fsync
    assert paths.index(str(partial / "manifest.json")) > max(
        paths.index(str(partial / n)) for n in data
    )
    folder = paths.index(str(partial))
    assert synced[folder][1:] == (True, False)  # the folder, whole, before the rename
    assert folder > paths.index(str(partial / "manifest.json"))
    assert synced[-1] == (str(tmp_path), False, True)  # the parent, after the rename
    assert verify_export(out) == []
