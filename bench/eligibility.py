"""Eligibility benchmark: a 30-epoch season for a large fleet, computed from intervals by the
polars core and by the same rules written as DuckDB SQL (window functions), each in its own
process so that time and peak memory are each engine's own. Both outputs are compared row
by row; the ratio is DuckDB time / polars time, measured in the same run.

    .venv/bin/python bench/eligibility.py [--devices 600000]

Inputs: intervals with realistic gaps (bench/fleet_intervals.py), device metadata (GPU
models for tier weights, 1% suspended) and two incidents scoped to all devices. Times
exclude reading the inputs; peak memory is the process's maximum resident set, inputs
included. Results: bench/out/eligibility.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet_intervals import density, fleet_intervals  # noqa: E402

from bench.memory import peak_rss_mib  # noqa: E402
from rewards.compute import ShardedSeason, compute, split_inputs  # noqa: E402
from rewards.core import DEVICES, INCIDENTS, SeasonPolicy, device_epochs  # noqa: E402
from rewards.core.frames import to_us  # noqa: E402
from rewards.executors import InProcess, ProcessPool  # noqa: E402
from rewards.seasons import load_policy  # noqa: E402

OUT = ROOT / "bench" / "out"
POLICY = load_policy(ROOT / "config" / "seasons" / "ignition-s2.toml")
COMPARED = [
    "device_id",
    "epoch",
    "online_us",
    "bridged_us",
    "credited_us",
    "eligible",
    "reason",
    "reward",
    "bridges_used",
    "bridges_denied",
    "longest_us",
    "crediting_incidents",
]


def make_inputs(devices: int) -> dict[str, Path]:
    OUT.mkdir(exist_ok=True)
    kinds = ("intervals", "devices", "incidents")
    paths = {k: OUT / f"{k}-dense-{devices}.parquet" for k in kinds}
    if all(p.exists() for p in paths.values()):
        return paths
    block = 600_000  # a larger fleet is made and written a block of devices at a time
    parts = []
    for first in range(0, devices, block):
        part = OUT / f"intervals-block-{first}.parquet"
        fleet_intervals(
            POLICY, min(block, devices - first), 1 + first // block, first
        ).write_parquet(part)
        parts.append(part)
    pl.scan_parquet(parts).sink_parquet(paths["intervals"])
    for part in parts:
        part.unlink()
    device_metadata(0, devices, seed=2).write_parquet(paths["devices"])
    incidents_frame().write_parquet(paths["incidents"])
    return paths


def device_metadata(first: int, count: int, seed: int) -> pl.DataFrame:
    """Devices `first` to `first + count - 1`: GPU models (for tier weights), 1% suspended."""
    rng = np.random.default_rng(seed)
    models = np.array(["RTX 3090", "RTX 4090", "A100", "H100", "RTX A6000"])
    return pl.DataFrame(
        {
            "device_id": [f"gpu-{i:07d}" for i in range(first, first + count)],
            "gpu_model": models[rng.integers(0, len(models), count)],
            "suspended": rng.random(count) < 0.01,
            "valid_from": None,
            "valid_to": None,
        },
        schema=dict(DEVICES),
    )


def incidents_frame() -> pl.DataFrame:
    """The forced upgrade of day 5 (48 h to recover) and an API outage nine days later,
    both scoped to every device."""
    start = POLICY.start + timedelta(days=5, hours=8, minutes=5)
    return pl.DataFrame(
        [
            {
                "incident_id": "forced-upgrade",
                "start": start,
                "end": start + timedelta(hours=1),
                "recovery_deadline_us": 48 * 3_600_000_000,
                "scope_all": True,
                "scope_device_ids": [],
                "scope_version_below": None,
            },
            {
                "incident_id": "api-outage",
                "start": start + timedelta(days=9),
                "end": start + timedelta(days=9, hours=2),
                "recovery_deadline_us": 3_600_000_000,
                "scope_all": True,
                "scope_device_ids": [],
                "scope_version_below": None,
            },
        ],
        schema=dict(INCIDENTS),
    )


def run_polars(paths: dict[str, Path]) -> tuple[float, pl.DataFrame]:
    intervals = pl.read_parquet(paths["intervals"])
    devices = pl.read_parquet(paths["devices"])
    incidents = pl.read_parquet(paths["incidents"])
    started = time.perf_counter()
    results = device_epochs(intervals, POLICY, incidents=incidents, devices=devices)
    elapsed = time.perf_counter() - started
    return elapsed, comparable(results)


def duckdb_sql(p: object) -> list[str]:
    """The rules of DESIGN 4 as DuckDB SQL over intervals, devices and incidents (µs)."""
    assert isinstance(p, SeasonPolicy)
    S, L, N = to_us(p.start), p.epoch_length_us, p.epoch_count
    E = S + N * L
    num, den = p.min_uptime_ratio.numerator, p.min_uptime_ratio.denominator
    threshold = -((-num * L) // den)
    tiers = " ".join(f"WHEN '{m}' THEN {w}" for m, w in p.tier_weights.items() if m != "default")
    epoch_of = f"CAST(floor((({{x}}) - {S})::DOUBLE / {L}) AS BIGINT)"
    return [
        f"""CREATE TEMP TABLE marked AS
        WITH gaps AS (
          SELECT device_id, "end" AS g0, lead(start) OVER w AS g1,
                 last_boot_id AS bb, last_agent_version AS vb,
                 lead(first_boot_id) OVER w AS ba, lead(first_agent_version) OVER w AS va
          FROM iv WINDOW w AS (PARTITION BY device_id ORDER BY start)),
        g AS (
          SELECT device_id, g0, g1,
            CASE WHEN {epoch_of.format(x="g0")} BETWEEN 0 AND {N - 1}
                 THEN {epoch_of.format(x="g0")} END AS epoch,
            (g1 - g0 <= {p.restart_grace_us}) AND (bb <> ba OR vb <> va) AS bridgeable
          FROM gaps WHERE g1 IS NOT NULL),
        r AS (SELECT *, sum(bridgeable::INT) OVER (PARTITION BY device_id, epoch ORDER BY g0
                 ROWS UNBOUNDED PRECEDING) AS rnk FROM g)
        SELECT device_id, g0, g1, epoch,
          bridgeable AND (epoch IS NULL OR rnk <= {p.max_bridges_per_epoch}) AS bridged,
          bridgeable AND epoch IS NOT NULL AND rnk > {p.max_bridges_per_epoch} AS denied
        FROM r""",
        f"""CREATE TEMP TABLE windows AS
        SELECT m.device_id, m.g0, greatest(m.g0, i.a) AS c0,
               least(m.g1, i.b + i.recovery_deadline_us) AS c1, i.incident_id
        FROM marked m JOIN inc i ON m.g0 < i.b AND m.g1 > i.a
             AND m.g0 >= i.a - {p.incident_lookback_us}
        WHERE NOT m.bridged AND i.scope_all
          AND greatest(m.g0, i.a) < least(m.g1, i.b + i.recovery_deadline_us)""",
        """CREATE TEMP TABLE credits AS
        SELECT device_id, min(c0) AS c0, max(c1) AS c1 FROM (
          SELECT *, sum(CASE WHEN prev IS NULL OR c0 > prev THEN 1 ELSE 0 END)
                    OVER (PARTITION BY device_id, g0 ORDER BY c0 ROWS UNBOUNDED PRECEDING) AS run
          FROM (SELECT *, max(c1) OVER (PARTITION BY device_id, g0 ORDER BY c0
                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev
                FROM windows))
        GROUP BY device_id, g0, run""",
        f"""CREATE TEMP TABLE pieces AS
        WITH seg AS (
          SELECT device_id, start AS s, "end" AS e, 'online' AS kind, NULL AS incident_id FROM iv
          UNION ALL SELECT device_id, g0, g1, 'bridged', NULL FROM marked WHERE bridged
          UNION ALL SELECT device_id, c0, c1, 'credited', NULL FROM credits
          UNION ALL SELECT device_id, c0, c1, 'attribution', incident_id FROM windows),
        inside AS (SELECT device_id, greatest(s, {S}) AS s, least(e, {E}) AS e, kind, incident_id
                   FROM seg WHERE e > {S} AND s < {E}),
        ex AS (SELECT *, unnest(range({epoch_of.format(x="s")},
                                      {epoch_of.format(x="e - 1")} + 1)) AS epoch FROM inside)
        SELECT device_id, epoch, kind, incident_id,
               greatest(s, {S} + epoch * {L}) AS s, least(e, {S} + (epoch + 1) * {L}) AS e
        FROM ex WHERE least(e, {S} + (epoch + 1) * {L}) > greatest(s, {S} + epoch * {L})""",
        f"""CREATE TEMP TABLE table_ AS
        WITH counted AS (
          SELECT device_id, epoch,
            coalesce(sum(e - s) FILTER (WHERE kind = 'online'), 0) AS online_us,
            coalesce(sum(e - s) FILTER (WHERE kind = 'bridged'), 0) AS bridged_us,
            coalesce(sum(e - s) FILTER (WHERE kind = 'credited'), 0) AS credited_us,
            list(DISTINCT incident_id ORDER BY incident_id)
              FILTER (WHERE kind = 'attribution') AS crediting_incidents
          FROM pieces GROUP BY device_id, epoch),
        longest AS (
          SELECT device_id, epoch,
            greatest(max(s - prev_e), {S} + (epoch + 1) * {L} - max(e)) AS longest_us
          FROM (SELECT *, coalesce(lag(e) OVER (PARTITION BY device_id, epoch ORDER BY s),
                                   {S} + epoch * {L}) AS prev_e
                FROM pieces WHERE kind <> 'attribution')
          GROUP BY device_id, epoch),
        bridges AS (
          SELECT device_id, epoch, sum(bridged::INT) AS bridges_used,
                 sum(denied::INT) AS bridges_denied
          FROM marked WHERE epoch IS NOT NULL GROUP BY device_id, epoch),
        known AS (SELECT device_id FROM iv UNION SELECT device_id FROM dev),
        grid AS (SELECT device_id, epoch FROM known CROSS JOIN range(0, {N}) t(epoch))
        SELECT grid.device_id, grid.epoch,
          coalesce(online_us, 0) AS online_us, coalesce(bridged_us, 0) AS bridged_us,
          coalesce(credited_us, 0) AS credited_us,
          coalesce(online_us, 0) + coalesce(bridged_us, 0) + coalesce(credited_us, 0) AS cnt,
          coalesce(bridges_used, 0) AS bridges_used, coalesce(bridges_denied, 0) AS bridges_denied,
          coalesce(longest_us, {L}) AS longest_us,
          coalesce(crediting_incidents, []) AS crediting_incidents,
          coalesce(dev.suspended, false) AS suspended,
          CASE dev.gpu_model {tiers} ELSE {p.tier_weights["default"]} END AS tier
        FROM grid
        LEFT JOIN counted USING (device_id, epoch) LEFT JOIN longest USING (device_id, epoch)
        LEFT JOIN bridges USING (device_id, epoch) LEFT JOIN dev USING (device_id)""",
        f"""CREATE TEMP TABLE results AS
        WITH r AS (
          SELECT *, NOT suspended AND cnt >= {threshold} AS eligible,
            CASE WHEN suspended THEN 'SUSPENDED' WHEN cnt >= {threshold} THEN 'ELIGIBLE'
                 WHEN cnt = 0 THEN 'NO_HEARTBEATS' ELSE 'BELOW_MIN_UPTIME' END AS reason
          FROM table_),
        w AS (SELECT *, CAST(cnt AS HUGEINT) * tier AS weight FROM r WHERE eligible),
        s AS (SELECT *, sum(weight) OVER (PARTITION BY epoch) AS total FROM w),
        f AS (SELECT *, weight * {p.pool_per_epoch} // total AS fl,
                        weight * {p.pool_per_epoch} % total AS rem FROM s),
        k AS (SELECT *, {p.pool_per_epoch} - sum(fl) OVER (PARTITION BY epoch) AS left_,
                 row_number() OVER (PARTITION BY epoch ORDER BY rem DESC, device_id) AS rank_
              FROM f)
        SELECT r.device_id, r.epoch, r.online_us, r.bridged_us, r.credited_us, r.eligible,
          r.reason,
          coalesce(CAST(k.fl + CASE WHEN k.rank_ <= k.left_ THEN 1 ELSE 0 END AS BIGINT), 0)
            AS reward,
          r.bridges_used, r.bridges_denied, r.longest_us, r.crediting_incidents
        FROM r LEFT JOIN k USING (device_id, epoch)""",
    ]


def run_duckdb(paths: dict[str, Path]) -> tuple[float, pl.DataFrame]:
    """The reference, tuned: before the clock starts, devices become dense integer codes
    (in device_id order, so the largest-remainder tie-break is unchanged), boot ids and
    versions 64-bit hashes, and the intervals are stored sorted by (device, start); DuckDB
    runs on every core without preserving insertion order. Only the rules are timed, and
    their result is mapped back to device_id strings after the clock stops."""
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"""CREATE TABLE keys AS SELECT device_id AS name,
        CAST(row_number() OVER (ORDER BY device_id) AS INTEGER) AS code FROM (
          SELECT device_id FROM read_parquet('{paths["intervals"]}')
          UNION SELECT device_id FROM read_parquet('{paths["devices"]}'))""")
    con.execute(f"""CREATE TABLE iv AS SELECT k.code AS device_id, epoch_us(start) AS start,
        epoch_us("end") AS "end", hash(first_boot_id) AS first_boot_id,
        hash(first_agent_version) AS first_agent_version, hash(last_boot_id) AS last_boot_id,
        hash(last_agent_version) AS last_agent_version
        FROM read_parquet('{paths["intervals"]}') JOIN keys k ON k.name = device_id
        ORDER BY k.code, start""")
    con.execute(f"""CREATE TABLE dev AS SELECT k.code AS device_id, gpu_model, suspended
        FROM read_parquet('{paths["devices"]}') JOIN keys k ON k.name = device_id
        ORDER BY k.code""")
    con.execute(f"""CREATE TABLE inc AS SELECT incident_id, epoch_us(start) AS a,
        epoch_us("end") AS b, recovery_deadline_us, scope_all
        FROM read_parquet('{paths["incidents"]}')""")
    started = time.perf_counter()
    for statement in duckdb_sql(POLICY):
        con.execute(statement)
    elapsed = time.perf_counter() - started  # results are materialized; export is not timed
    exported = OUT / "duckdb-raw.parquet"
    con.execute(f"""COPY (SELECT k.name AS device_id, r.* EXCLUDE (device_id) FROM results r
        JOIN keys k ON k.code = r.device_id ORDER BY epoch, k.name) TO '{exported}'""")
    results = pl.read_parquet(exported)
    return elapsed, results.select(COMPARED).cast(
        {
            "epoch": pl.Int64,
            "online_us": pl.Int64,
            "bridged_us": pl.Int64,
            "credited_us": pl.Int64,
            "bridges_used": pl.Int64,
            "bridges_denied": pl.Int64,
            "longest_us": pl.Int64,
            "reward": pl.Int64,
        }
    )


def comparable(results: pl.DataFrame) -> pl.DataFrame:
    us = 1_000_000
    return results.select(
        "device_id",
        "epoch",
        *[
            (pl.col(f"{k}_s") * us).round().cast(pl.Int64).alias(f"{k}_us")
            for k in ("online", "bridged", "credited")
        ],
        "eligible",
        "reason",
        "reward",
        "bridges_used",
        "bridges_denied",
        (pl.col("longest_uncounted_gap_s") * us).round().cast(pl.Int64).alias("longest_us"),
        "crediting_incidents",
    )


def split(root: Path, shards: int, paths: dict[str, Path]) -> None:
    split_inputs(
        root,
        shards,
        pl.scan_parquet(paths["intervals"]),
        devices=pl.scan_parquet(paths["devices"]),
    )


def run_sharded(
    paths: dict[str, Path], devices: int, shards: int, workers: int
) -> dict[str, object]:
    """The engine shard by shard (rewards/compute.py): the inputs split into files by
    shard (timed apart: a store partitioned by shard has them so), then every shard's
    tasks in this process or in `workers` processes. Peak memory is this process's plus
    each worker's; the split's is reported apart."""
    root = OUT / f"season-{devices}"
    started = time.perf_counter()
    with ProcessPool(1) as splitter:  # its own process: its memory is not the driver's
        splitter.map(split, [(root, shards, paths)])
        split_mib = max(peak_rss_mib(pid) for pid in splitter.pids())
    split_s = time.perf_counter() - started
    season = ShardedSeason(root, shards)
    incidents = pl.read_parquet(paths["incidents"])
    started = time.perf_counter()
    if workers:
        with ProcessPool(workers) as pool:
            compute(season, POLICY, incidents=incidents, executor=pool)
            pids = pool.pids()
            worker_mib = [peak_rss_mib(pid) for pid in pids]
    else:
        compute(season, POLICY, incidents=incidents, executor=InProcess())
        worker_mib = []
    elapsed = time.perf_counter() - started
    driver_mib = peak_rss_mib()
    started = time.perf_counter()
    count = sum(e.height for e in season.epochs(range(POLICY.epoch_count)))
    ordered_s = time.perf_counter() - started
    folder = OUT / f"results-{'pool' if workers else 'sharded'}-{devices}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for epoch, frame in enumerate(season.epochs(range(POLICY.epoch_count))):
        comparable(frame).write_parquet(folder / f"epoch-{epoch:03d}.parquet")
    return {
        "seconds": elapsed,
        "peak_mib": driver_mib + sum(worker_mib),
        "driver_mib": driver_mib,
        "worker_mib": worker_mib,
        "split_seconds": split_s,
        "split_peak_mib": split_mib,
        "read_in_order_seconds": ordered_s,
        "rows": count,
        "shards": shards,
        "workers": workers,
    }


ENGINES = ("polars", "duckdb", "sharded", "pool")


def child(engine: str, devices: int, shards: int, workers: int) -> None:
    paths = make_inputs(devices)
    if engine in ("sharded", "pool"):
        report = run_sharded(paths, devices, shards, workers if engine == "pool" else 0)
        print(json.dumps(report))
        return
    elapsed, results = (run_polars if engine == "polars" else run_duckdb)(paths)
    results.write_parquet(OUT / f"results-{engine}-{devices}.parquet")
    print(json.dumps({"seconds": elapsed, "peak_mib": peak_rss_mib(), "rows": results.height}))


def results_of(engine: str, devices: int, epoch: int) -> pl.DataFrame:
    """One epoch of an engine's results (a file, or a folder of files by epoch)."""
    path = OUT / f"results-{engine}-{devices}"
    source = f"{path}/*.parquet" if path.is_dir() else f"{path}.parquet"
    return (
        pl.scan_parquet(source)
        .filter(pl.col("epoch") == epoch)
        .collect()
        .cast({c: pl.Int64 for c in ("epoch", "online_us", "reward")})
        .sort("device_id")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=600_000)
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="which to run, of: polars (the core over the whole fleet), duckdb (the "
        "reference), sharded (the core shard by shard in one process), pool (shard by "
        "shard in --workers processes); the first is the one the others are checked against",
    )
    parser.add_argument("--shard-devices", type=int, default=37_500, help="devices per shard")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    shards = max(1, -(-args.devices // args.shard_devices))
    if args.engine:
        child(args.engine, args.devices, shards, args.workers)
        return
    started = time.perf_counter()
    paths = make_inputs(args.devices)
    frame = pl.scan_parquet(paths["intervals"])
    intervals = frame.select(pl.len()).collect().item()
    per_device_day = round(density(frame, POLICY), 2)
    print(
        f"inputs: {args.devices:,} devices, {intervals:,} intervals ({per_device_day} a "
        f"device-day), {POLICY.epoch_count} epochs (made in "
        f"{time.perf_counter() - started:.1f} s)"
    )
    report: dict[str, Any] = {
        "devices": args.devices,
        "intervals": intervals,
        "intervals_per_device_day": per_device_day,
        "epochs": POLICY.epoch_count,
    }
    engines = [e for e in args.engines.split(",") if e]
    for engine in engines:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--engine",
                engine,
                "--devices",
                str(args.devices),
                "--shard-devices",
                str(args.shard_devices),
                "--workers",
                str(args.workers),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        report[engine] = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{engine:>8}: {report[engine]['seconds']:.2f} s, "
            f"peak {report[engine]['peak_mib']:,.0f} MiB",
            json.dumps(report[engine]),
        )
    for engine in engines[1:]:
        same = all(
            results_of(engine, args.devices, epoch).equals(
                results_of(engines[0], args.devices, epoch)
            )
            for epoch in range(POLICY.epoch_count)
        )
        report[engine]["identical_to_" + engines[0]] = same
        ratio = report[engine]["seconds"] / report[engines[0]]["seconds"]
        print(f"{engine} vs {engines[0]}: identical {same}; time ratio {ratio:.2f}")
        if not same:
            raise SystemExit(f"{engine} and {engines[0]} disagree")
    if "duckdb" in report:
        for engine in engines:
            if engine != "duckdb":
                faster = report["duckdb"]["seconds"] / report[engine]["seconds"]
                report[engine]["duckdb_over_this"] = round(faster, 2)
                print(f"{engine} is {faster:.2f}x faster than DuckDB")
    (OUT / f"eligibility-{args.devices}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
