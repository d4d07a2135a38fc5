"""Full-season snapshot rerun on PostgreSQL, end to end, for a large fleet.

    .venv/bin/python bench/snapshot.py [--devices 600000] [--url postgresql+psycopg://...]
    .venv/bin/python bench/snapshot.py --reuse --view-only  # the view alone, on a kept database

Set-up (not timed): a fresh database at the latest migration holding a 30-epoch season of
online intervals (bench/fleet_intervals.py; with --seasons-before N, the same fleet's in
N earlier seasons too, as a database holds them), a device registry with owners (one supplier
per six devices), GPU models and 1% suspended, and a confirmed incident over the forced
upgrade. Timed: `run_snapshot` (reading the intervals, incidents and metadata in one
transaction, fingerprinting them, computing, hashing the canonical export, writing the
draft's rows, payouts and totals) and then `export` (reading the rows back, checking their
hash, writing CSV, Parquet and the manifest). Each stage's share of the total is reported,
and the whole as a ratio to the compute stage measured in the same run; then the season's
eligibility view is built from the same database, timed apart. Peak memory counts from
the start of each timed part (the set-up's is left out). Results:
bench/out/snapshot.json. The database and the export are dropped at the end (--keep keeps
them, and so does --reuse).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import polars as pl
from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet_intervals import density, fleet_intervals  # noqa: E402

from bench.memory import ChildPeaks, peak_rss_mib, reset_peak  # noqa: E402
from rewards.core.frames import to_us  # noqa: E402
from rewards.db.bulk import load_frame  # noqa: E402
from rewards.db.engine import make_engine  # noqa: E402
from rewards.db.heartbeats import insert_intervals, settle_open_intervals  # noqa: E402
from rewards.db.migrate import upgrade  # noqa: E402
from rewards.seasons import load_policy  # noqa: E402
from rewards.services.audit_bundle import write_audit_bundle  # noqa: E402
from rewards.services.computing import ComputePlan  # noqa: E402
from rewards.services.eligibility_view import refresh_view  # noqa: E402
from rewards.services.exports import export  # noqa: E402
from rewards.services.records import SnapshotRecord  # noqa: E402
from rewards.services.snapshot_runs import Stages, run_snapshot  # noqa: E402

OUT = ROOT / "bench" / "out"
NAME = "rewards_bench_snapshot"
POLICY = load_policy(ROOT / "config" / "seasons" / "ignition-s2.toml")
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MODELS = ["RTX 3090", "RTX 4090", "A100", "H100", "L40S"]


def fresh_database(admin_url: str, name: str) -> str:
    drop_database(admin_url, name)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    return url


def drop_database(admin_url: str, name: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def past_seasons(devices: int, seasons: int) -> Iterator[pl.DataFrame]:
    """The same fleet's intervals in each of `seasons` 30-day seasons before this one (a
    database holds every season's: a season's snapshot must not read them all)."""
    for back in range(1, seasons + 1):
        shift = timedelta(days=30 * back)
        earlier = replace(POLICY, start=POLICY.start - shift, end=POLICY.end - shift)
        yield fleet_intervals(earlier, devices, seed=1 + back)


def load_season(url: str, devices: int, seasons_before: int = 0) -> dict[str, int]:
    intervals = fleet_intervals(POLICY, devices)
    ids = intervals.get_column("device_id").unique().sort()
    rng = np.random.default_rng(7)
    season_start = POLICY.start
    owner = (pl.lit("owner-") + (pl.int_range(pl.len()) // 6).cast(pl.String).str.zfill(6)).alias(
        "owner_id"
    )
    registry = pl.DataFrame({"device_id": ids}).with_columns(
        owner,
        pl.Series("gpu_model", rng.choice(MODELS, ids.len())),
        pl.Series("suspended", rng.random(ids.len()) < 0.01),
    )
    when = season_start - timedelta(days=30)
    engine = make_engine(url)
    with engine.begin() as connection:
        suppliers = registry.select(pl.col("owner_id").unique().sort())
        load_frame(
            connection,
            "suppliers",
            suppliers.with_columns(first_seen_at=pl.lit(when.isoformat())),
        )
        load_frame(
            connection,
            "devices",
            registry.select("device_id", first_seen_at=pl.lit(when.isoformat())),
        )
        load_frame(
            connection,
            "device_metadata",
            registry.select(
                "device_id",
                "owner_id",
                "gpu_model",
                gpu_count=pl.lit(1),
                status=pl.when("suspended").then(pl.lit("suspended")).otherwise(pl.lit("active")),
                registered_at=pl.lit(when.isoformat()),
                valid_from=pl.lit(when.isoformat()),
                actor=pl.lit("bench"),
                source=pl.lit("bench"),
                recorded_at=pl.lit(when.isoformat()),
            ),
        )
        history = 0
        for season in [*past_seasons(devices, seasons_before), intervals]:
            insert_intervals(connection, season)  # stored as ingest stores them (elided)
            history += season.height
        settle_open_intervals(connection)  # each device's latest is its open row
        forced = datetime(2024, 4, 25, 8, 5, tzinfo=UTC)
        connection.execute(
            text(
                'INSERT INTO incidents (id, start, "end", recovery_deadline_us, scope, status, '
                "source, reason, created_at, updated_at, decided_by) VALUES ('forced-upgrade', "
                ":a, :b, :r, '{\"all\": true}', 'confirmed', 'admin', 'bench', :a, :a, 'bench')"
            ),
            {"a": forced, "b": forced + timedelta(hours=1), "r": 48 * 3_600_000_000},
        )
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    return {
        "devices": ids.len(),
        "suppliers": suppliers.height,
        "intervals": intervals.height,
        "seasons_before": seasons_before,
        "intervals_stored": history,
        "intervals_per_device_day": round(density(intervals, POLICY), 2),
        "season_start_us": to_us(season_start),
    }


def set_up(args: argparse.Namespace) -> tuple[str, dict[str, int]]:
    """The season's database (made, or the one a --keep run left with --reuse) and sizes."""
    kept = OUT / "snapshot-setup.json"
    if args.reuse:
        url, sizes = args.url.rsplit("/", 1)[0] + f"/{NAME}", json.loads(kept.read_text())
    else:
        print(f"set-up: {args.devices:,} devices, 30 epochs ...", flush=True)
        started = time.perf_counter()
        url = fresh_database(args.url, NAME)
        # in a process of its own: making 44M intervals leaves 5.6 GiB resident that the
        # run's peak would otherwise count
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as setup:
            sizes = setup.submit(load_season, url, args.devices, args.seasons_before).result()
        kept.write_text(json.dumps(sizes))
        print(f"set-up done in {time.perf_counter() - started:.0f} s: {sizes}", flush=True)

    return url, sizes


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def audit_bundle(engine: Engine, snap: SnapshotRecord, kept: Path) -> dict[str, object]:
    """What keeping the inputs cost, then the audit bundle written and reproduced by the
    CLI in its own process (its time and peak memory)."""
    intervals = sum(
        pl.scan_parquet(p).select(pl.len()).collect().item()
        for p in kept.rglob("intervals/part-*.parquet")
    )
    out = OUT / "audit-bundle"
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    write_audit_bundle(engine, snap, key=bytes(32), kept=kept, out=out)
    written = time.perf_counter() - began
    print("  reproduce (its own process) ...", flush=True)
    with ChildPeaks() as child:
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "rewards", "snapshot", "reproduce", str(out), "--json"],
            capture_output=True, text=True, check=False, cwd=ROOT,
        )  # fmt: skip
        reproduced = time.perf_counter() - began
    checks = json.loads(done.stdout)["checks"] if done.stdout else []
    report = {
        "kept_inputs_bytes": _bytes(kept),
        "kept_intervals": intervals,
        "kept_bytes_per_interval": round(_bytes(kept) / max(intervals, 1), 2),
        "audit_bundle_s": round(written, 1),
        "audit_bundle_bytes": _bytes(out),
        "reproduce_s": round(reproduced, 1),
        "reproduce_peak_rss_mib": child.peak,
        "reproduced": done.returncode == 0,
        "reproduce_failed": [c["name"] for c in checks if c["ok"] is False] or done.stderr[-500:],
    }
    shutil.rmtree(out, ignore_errors=True)
    return report


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=600_000)
    parser.add_argument("--url", default=ADMIN, help="PostgreSQL admin URL (database test)")
    parser.add_argument("--keep", action="store_true", help="keep the database and export")
    parser.add_argument("--shard-devices", type=int, default=ComputePlan().shard_devices)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes for the shards (their memory is not in the reported peak)",
    )
    parser.add_argument(
        "--seasons-before",
        type=int,
        default=0,
        help="also store the fleet's intervals of this many earlier seasons (not timed)",
    )
    parser.add_argument("--no-view", action="store_true", help="skip the eligibility view")
    parser.add_argument(
        "--audit",
        action="store_true",
        help="also write the audit bundle and reproduce it (`rewards snapshot reproduce`)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="the database a --keep run left (no set-up); it is kept again afterwards",
    )
    parser.add_argument(
        "--view-only", action="store_true", help="only the view (with --reuse): no rerun"
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    if args.view_only and not args.reuse:
        raise SystemExit("--view-only needs --reuse: the view reads a kept database")
    OUT.mkdir(parents=True, exist_ok=True)
    url, sizes = set_up(args)
    engine = make_engine(url)
    report: dict[str, object] = {**sizes}
    if not args.view_only:
        report |= rerun(args, engine)
    if not args.no_view:
        report |= view(args, engine)
    engine.dispose()
    if not args.view_only and not args.no_view:  # the whole run: the file the README quotes
        (OUT / "snapshot.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    # nothing left behind without --keep; a reused database stays for the next run (a run
    # that dropped it made the next pair of runs wait 8 minutes for a new one)
    if not (args.keep or args.reuse):
        drop_database(args.url, NAME)
        shutil.rmtree(OUT / "snapshot-export", ignore_errors=True)
        shutil.rmtree(OUT / "snapshot-inputs", ignore_errors=True)


def rerun(args: argparse.Namespace, engine: Engine) -> dict[str, object]:
    """The timed snapshot rerun and export, with its audit bundle when asked."""
    peaks: dict[str, float] = {}  # the peak so far as each stage begins: where it was reached

    def begin(name: str) -> None:
        peaks[name] = peak_rss_mib()
        print(f"  {name} ... (peak so far {peaks[name]:,.0f} MiB)", flush=True)

    stages = Stages(on_stage=begin)
    kept = OUT / "snapshot-inputs"
    shutil.rmtree(kept, ignore_errors=True)
    peak_reset = reset_peak()  # from here on, the run's own peak
    with ChildPeaks() as workers:
        began = time.perf_counter()
        outcome = run_snapshot(
            engine,
            POLICY,
            epochs=range(POLICY.epoch_count),
            trigger="manual",
            triggered_by="bench",
            reason="full-season rerun",
            clock=lambda: datetime.now(UTC),
            lock_ttl=timedelta(minutes=30),
            key=bytes(32),  # a benchmark's own
            stages=stages,
            plan=ComputePlan(args.shard_devices, args.workers),
            force=True,  # a rerun: a new version even when a kept database has one already
            keep=kept,  # as a site does: its inputs kept for the audit bundle
        )
        destination = OUT / "snapshot-export"
        shutil.rmtree(destination, ignore_errors=True)
        with stages.stage("export (read back, verify hash, CSV + Parquet + manifest)"):
            export(engine, outcome.snapshot, destination)
        total = time.perf_counter() - began
    run_peak = peak_rss_mib()
    audit = audit_bundle(engine, outcome.snapshot, kept) if args.audit else {}
    return {
        "device_epoch_rows": outcome.snapshot.device_epoch_rows,
        "total_s": round(total, 1),
        "stages_s": {k: round(v, 1) for k, v in stages.seconds.items()},
        "shares": {name: round(s / total, 3) for name, s in stages.seconds.items()},
        "total_over_compute": round(total / stages.seconds["compute"], 2),
        "peak_rss_mib": run_peak if peak_reset else None,
        "peak_mib_as_each_stage_began": peaks,
        "worker_peak_rss_mib": workers.peak,  # the largest worker's, snapshot run and export
        "shard_devices": args.shard_devices,
        "workers": args.workers,
        "target_s": 90,
        **audit,
    }


def view(args: argparse.Namespace, engine: Engine) -> dict[str, object]:
    """The eligibility view of the whole season, from the same database (DESIGN 6)."""
    peak_reset = reset_peak()
    view_stages = Stages(on_stage=lambda name: print(f"  view: {name} ...", flush=True))
    with ChildPeaks() as view_workers:
        view_began = time.perf_counter()
        refresh_view(
            engine,
            POLICY,
            trigger="bench",
            clock=lambda: POLICY.end + timedelta(days=1),
            lock_ttl=timedelta(minutes=30),
            stages=view_stages,
            plan=ComputePlan(args.shard_devices, args.workers),
            force=True,
        )
    return {
        "view_s": round(time.perf_counter() - view_began, 1),
        "view_stages_s": {k: round(v, 1) for k, v in view_stages.seconds.items()},
        "view_peak_rss_mib": peak_rss_mib() if peak_reset else None,
        "view_worker_peak_rss_mib": view_workers.peak,
        "view_target_s": 60,
    }


if __name__ == "__main__":
    main()
