"""End-to-end ingestion benchmark: simulator over loopback HTTP -> validation -> storage ->
interval upkeep, in heartbeats per second, into SQLite and PostgreSQL.

The simulator runs in its own process (as the real uptime API would). Two references are
measured in the same run: the fleet's peak rate (600,000 devices at one heartbeat a minute,
10,000/s) and a fetch-only pass (the same pages pulled and decoded, nothing validated or
stored), the ceiling of the HTTP path on this machine. Results: bench/out/ingest.json.

    .venv/bin/python bench/ingest.py [--devices 2000] [--days 2] [--page-size 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewards.db.engine import make_engine, unit_of_work  # noqa: E402
from rewards.db.heartbeats import count_heartbeats  # noqa: E402
from rewards.db.migrate import upgrade  # noqa: E402
from rewards.seasons import load_policy  # noqa: E402
from rewards.services.ingest import pull_stream  # noqa: E402
from rewards.uptime.client import UptimeClient  # noqa: E402
from tests.processes import free_port  # noqa: E402

PEAK = 10_000
PG_ADMIN = os.environ.get(
    "REWARDS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TOKEN = "bench-token"


def start_simulator(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rewards",
            "sim",
            "serve",
            "--port",
            str(port),
            "--token",
            TOKEN,
            "--devices",
            str(args.devices),
            "--days",
            str(args.days),
            "--scenario",
            "april-2024",
            "--seed",
            "7",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("simulator did not start")


def fetch_only(url: str, page_size: int) -> tuple[int, float]:
    started, count, cursor = time.perf_counter(), 0, None
    with UptimeClient(url, TOKEN) as client:
        while True:
            page = client.fetch_page("heartbeats", cursor, page_size)
            count += len(page.records)
            cursor = page.next_cursor
            if not page.has_more:
                return count, time.perf_counter() - started


def ingest(db_url: str, url: str, page_size: int) -> tuple[int, int, float]:
    upgrade(db_url)
    engine = make_engine(db_url)
    policy = load_policy(ROOT / "config" / "seasons" / "ignition-s2.toml")
    with UptimeClient(url, TOKEN) as client:
        started = time.perf_counter()
        report = pull_stream(
            engine=engine,
            client=client,
            stream="heartbeats",
            policy=policy,
            page_size=page_size,
            max_skew=timedelta(minutes=5),
            clock=lambda: datetime.now(UTC),
        )
        elapsed = time.perf_counter() - started
    if report.error:
        raise SystemExit(f"ingest failed: {report.error}")
    with unit_of_work(engine) as session:
        stored = count_heartbeats(session.connection())
    engine.dispose()
    return report.pulled, stored, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--page-size", type=int, default=10_000)
    args = parser.parse_args()

    process, url = start_simulator(args)
    results: dict[str, object] = {
        "devices": args.devices,
        "days": args.days,
        "page_size": args.page_size,
        "fleet_peak_per_s": PEAK,
    }
    try:
        delivered, seconds = fetch_only(url, args.page_size)
        fetch_rate = delivered / seconds
        results["fetch_only"] = {
            "heartbeats": delivered,
            "seconds": round(seconds, 2),
            "per_s": round(fetch_rate),
        }
        print(
            f"fetch only (reference): {delivered:,} deliveries in {seconds:.1f} s = "
            f"{fetch_rate:,.0f}/s"
        )
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        name = f"rewards_bench_{os.getpid()}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        with tempfile.TemporaryDirectory() as tmp:
            targets = {
                "sqlite": f"sqlite:///{tmp}/bench.db",
                "postgresql": PG_ADMIN.rsplit("/", 1)[0] + f"/{name}",
            }
            try:
                for dialect, db_url in targets.items():
                    pulled, stored, elapsed = ingest(db_url, url, args.page_size)
                    rate = pulled / elapsed
                    results[dialect] = {
                        "delivered": pulled,
                        "stored": stored,
                        "seconds": round(elapsed, 2),
                        "per_s": round(rate),
                        "x_fleet_peak": round(rate / PEAK, 2),
                        "x_fetch_only": round(rate / fetch_rate, 2),
                    }
                    print(
                        f"{dialect:>10}: {pulled:,} deliveries ({stored:,} distinct) in "
                        f"{elapsed:.1f} s = {rate:,.0f}/s = {rate / PEAK:.1f}x the fleet peak, "
                        f"{rate / fetch_rate:.2f}x fetch-only"
                    )
            finally:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        process.terminate()
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
