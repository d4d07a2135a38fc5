"""Load on the supplier eligibility endpoint, over loopback, from a second process.

    .venv/bin/python bench/api_load.py [--devices 600000] [--rate 200] [--seconds 30]

Set-up (not timed): a fresh PostgreSQL database holding a 30-epoch season of 600,000
devices and one supplier per six devices (bench/snapshot.py's fleet), and the season's
eligibility view built as of its end (its build time is reported). Then `rewards api` is
started as its own process (two uvicorn workers, one per core) with the development
issuer, and this process is the load tool:
an open-loop generator sending requests at a fixed rate (each latency counts from when the
request was due, so a stalled server cannot hide its queue), each as a random supplier with
its own signed token, for all of that supplier's device-epochs (about 180 rows).

The reference, measured in the same run at the same rate, is `GET /healthz` (the HTTP stack
alone); the report gives throughput, p50, p90, p99 and max latency of both, and the
eligibility p99 as a ratio to the reference's. Target: p99 under 50 ms at 200 requests per
second on this 2-core machine. Results: bench/out/api_load.json. The database is dropped
at the end (--keep keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from snapshot import ADMIN, POLICY, drop_database, fresh_database, load_season  # noqa: E402

from rewards.api.verifier import dev_issuer  # noqa: E402
from rewards.core.outages import fleet_online_counts  # noqa: E402
from rewards.db.eligibility_views import ViewHeader  # noqa: E402
from rewards.db.engine import make_engine, unit_of_work  # noqa: E402
from rewards.db.interval_reads import load_intervals  # noqa: E402
from rewards.db.migrate import upgrade  # noqa: E402
from rewards.services.eligibility_view import refresh_view  # noqa: E402
from rewards.services.pages import _fleet_series  # noqa: E402
from rewards.services.snapshot_runs import Stages  # noqa: E402
from rewards.settings import get_settings  # noqa: E402

OUT = ROOT / "bench" / "out"
DATABASE = "rewards_bench_api"
PORT = 8791


def serve(url: str, key: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REWARDS_DATABASE_URL": url,
        "REWARDS_SEASON": POLICY.season_id,
        "REWARDS_DEV_ISSUER_ENABLED": "true",
        "REWARDS_DEV_ISSUER_KEY_FILE": str(key),
        # every request comes from 127.0.0.1 here, standing in for many clients
        "REWARDS_RATE_LIMIT_PER_IP": "1000000/minute",
    }
    log = (OUT / "api_load-server.log").open("wb")
    server = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "rewards"), "api", "--port", str(PORT), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the API did not become ready; see bench/out/api_load-server.log")


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection: (status, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def load(
    path_and_token: Sequence[tuple[str, str | None]], rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    """Send requests at `rate` per second for `seconds` over `connections` kept-alive
    connections; each latency counts from when its request was due, so time spent waiting
    for a free connection counts too (no coordinated omission). Raw HTTP/1.1 on asyncio
    streams: httpx's own overhead made the load tool the bottleneck."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.5
    due = iter(range(total))
    latencies: list[float] = []
    dues: list[float] = []  # when each request was due, from the start (the timeline)
    errors: list[str] = []
    rows, checked = 0, 0

    async def worker() -> None:
        nonlocal rows, checked
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
        try:
            for i in due:
                when = start + i / rate
                delay = when - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                path, token = path_and_token[i % len(path_and_token)]
                auth = f"Authorization: Bearer {token}\r\n" if token else ""
                request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode()
                status, body = await _exchange(reader, writer, request)
                latencies.append(time.perf_counter() - when)
                dues.append(when - start)
                if status != 200:
                    errors.append(str(status))
                elif token and checked < 200:  # parsing every body would slow the tool
                    rows += len(json.loads(body)["device_epochs"])
                    checked += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    second = np.array(dues).astype(int)
    slowest = [
        round(float(ms[second == s].max()), 1)
        for s in range(int(seconds) + 1)
        if (second == s).any()
    ]
    return {
        "requests": total,
        "failures": len(errors),
        "errors": sorted(set(errors)),
        "rows_per_checked_request": round(rows / max(1, checked), 1),
        "throughput_rps": round(total / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "slowest_per_second_ms": slowest,  # where a stall happened, and how long it lasted
    }


def prepare(args: argparse.Namespace) -> tuple[str, dict[str, int], ViewHeader, Stages]:
    """The database and its eligibility view (made, or reused with --reuse)."""
    started = time.perf_counter()
    stages = Stages()

    if args.reuse:
        url = args.url.rsplit("/", 1)[0] + f"/{DATABASE}"
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as connection:
            suppliers = connection.execute(text("SELECT count(*) FROM suppliers")).scalar_one()
            devices = connection.execute(text("SELECT count(*) FROM devices")).scalar_one()
        sizes = {"devices": devices, "suppliers": suppliers}
    else:
        print(f"set-up: {args.devices:,} devices, 30 epochs ...", flush=True)
        url = fresh_database(args.url, DATABASE)
        sizes = load_season(url, args.devices)
        engine = make_engine(url)
    view = refresh_view(
        engine,
        POLICY,
        trigger="bench",
        clock=lambda: POLICY.end,
        lock_ttl=timedelta(minutes=30),
        force=not args.reuse,
        stages=stages,
    ).view
    # settle the database before measuring: otherwise autovacuum analyzes the fresh tables
    # during the load phases (runs varied 3x)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM (ANALYZE) eligibility_documents, eligibility_views")
        connection.exec_driver_sql("CHECKPOINT")
    engine.dispose()
    print(f"set-up done in {time.perf_counter() - started:.0f} s: {stages.seconds}", flush=True)
    return url, sizes, view, stages


def fleet_chart(url: str) -> dict[str, float]:
    """The admin page's fleet series: counted from the database's per-instant tallies (what
    the page does), against reading every interval into polars (the reference), same run."""
    engine = make_engine(url)
    started = time.perf_counter()
    with unit_of_work(engine) as session:
        intervals = load_intervals(session.connection())
    end = intervals.get_column("end").max()
    step = (end - POLICY.start) / 720  # type: ignore[operator]
    reference = fleet_online_counts(intervals, start=POLICY.start, end=end, step=step)
    reference_s = time.perf_counter() - started
    del intervals, reference
    started = time.perf_counter()
    _fleet_series(engine, POLICY, now=datetime.now(UTC), points=720)
    measured_s = time.perf_counter() - started
    engine.dispose()
    return {
        "reference_every_interval_s": round(reference_s, 2),
        "tallies_in_database_s": round(measured_s, 2),
        "speedup": round(reference_s / measured_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=600_000)
    parser.add_argument(
        "--rates", default="200", help="requests per second; several (100,200) run in turn"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="per measured phase")
    parser.add_argument("--connections", type=int, default=32, help="kept-alive connections")
    parser.add_argument("--url", default=ADMIN, help="PostgreSQL admin URL (database test)")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--reuse", action="store_true", help="use the database a --keep run left (no set-up)"
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    url, sizes, view, stages = prepare(args)
    chart = fleet_chart(url)
    print(f"admin fleet chart: {chart}", flush=True)

    key = Path(tempfile.mkdtemp(prefix="bench-issuer-")) / "dev.pem"
    issuer = dev_issuer(get_settings(dev_issuer_key_file=key))
    now = datetime.now(UTC)
    rng = random.Random(11)
    owners = [f"owner-{rng.randrange(sizes['suppliers']):06d}" for _ in range(2_000)]
    supplier = [
        (
            "/v1/supplier/eligibility?limit=500",
            issuer.token(o, ["supplier"], now=now, ttl=timedelta(hours=1)),
        )
        for o in owners
    ]
    health: list[tuple[str, str | None]] = [("/healthz", None)]

    rates = [float(r) for r in args.rates.split(",")]
    runs: list[dict[str, object]] = []
    server = serve(url, key)
    try:
        # warm-up, not measured: every token once, so the measured phases read the 2,000
        # suppliers' documents from memory (a steady state where active suppliers poll);
        # without it, the first phase pays for the disk reads of first touches
        asyncio.run(load(supplier, 200, len(supplier) / 200, args.connections))
        for rate in rates:
            time.sleep(2)
            reference = asyncio.run(load(health, rate, args.seconds, args.connections))
            print(f"{rate:g}/s reference /healthz: {reference}", flush=True)
            time.sleep(2)
            measured = asyncio.run(load(supplier, rate, args.seconds, args.connections))
            print(f"{rate:g}/s /v1/supplier/eligibility: {measured}", flush=True)
            runs.append(
                {
                    "rate_rps": rate,
                    "reference_healthz": reference,
                    "supplier_eligibility": measured,
                    "p99_over_reference_p99": round(measured["p99_ms"] / reference["p99_ms"], 2),
                }
            )
    finally:
        server.terminate()
        server.wait(30)
    report = {
        **sizes,
        "view_rows": view.rows,
        "view_documents": view.owners,
        "view_build_s": round(sum(stages.seconds.values()), 1),
        "view_stages_s": {k: round(v, 1) for k, v in stages.seconds.items()},
        "admin_fleet_chart": chart,
        "seconds": args.seconds,
        "connections": args.connections,
        "runs": runs,
        "target": "p99 < 50 ms at 200 rps",
    }
    (OUT / "api_load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if not args.keep:
        drop_database(args.url, DATABASE)


if __name__ == "__main__":
    main()
