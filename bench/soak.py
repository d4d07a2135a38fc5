"""A soak of the whole service at the fleet's size (issue 14): `rewards serve` (the API and
the scheduler with every job: both ingests, compaction and retention, outage detection,
the eligibility view, the snapshot once an epoch has settled) pulling from the streaming
simulator at 600,000 devices, with supplier API load at 100 requests a second from a
second process, for --minutes of wall time. Each part is its own OS process.

Reported: the heartbeats ingested per wall second and the fleet time they cover, the lag
of a live fleet (the simulator serves a past season at once, so the lag is how far the
ingest falls behind a feed that would advance one fleet second per wall second from where
it started: 0 while ingestion keeps up), every job's runs, durations and errors (from
`job_runs`), the API's p50/p99 against `/healthz` in the same run (the reference), and the
peak RSS of each process. Results: bench/out/soak.json.

    .venv/bin/python bench/soak.py [--devices 600000] [--minutes 30] [--rate 100]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import api_load  # noqa: E402
from bench.ingest import PG_ADMIN, TOKEN, start_simulator  # noqa: E402
from bench.memory import peak_rss_mib  # noqa: E402
from rewards.api.verifier import dev_issuer  # noqa: E402
from rewards.settings import get_settings  # noqa: E402

OUT = ROOT / "bench" / "out"
REWARDS = str(ROOT / ".venv" / "bin" / "rewards")


def serve(env: dict[str, str]) -> subprocess.Popen[bytes]:
    done = subprocess.run([REWARDS, "db", "upgrade"], env=env, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"db upgrade failed: {done.stderr.decode()}")
    log = (OUT / "soak-server.log").open("wb")
    server = subprocess.Popen(
        [REWARDS, "serve", "--port", str(api_load.PORT)], env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{api_load.PORT}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("rewards serve did not start; see bench/out/soak-server.log")


def progress(db_url: str) -> tuple[int, int | None]:
    """(pages committed, watermark in µs) of the heartbeat stream."""
    engine = create_engine(db_url)
    with engine.connect() as c:
        row = c.execute(
            text("SELECT pages, watermark FROM ingest_cursors WHERE stream = 'heartbeats'")
        ).first()
    engine.dispose()
    return (0, None) if row is None else (int(row[0]), row[1])


def query(db_url: str, sql: str) -> list[Any]:
    """The rows of one query, on a connection of its own (the service owns the database)."""
    engine = create_engine(db_url)
    with engine.connect() as c:
        rows = list(c.execute(text(sql)).all())
    engine.dispose()
    return rows


def feed_start(db_url: str) -> int | None:
    """The earliest heartbeat ingested (µs): the start of the feed, where a live fleet's
    clock would have begun when the ingest did."""
    ((found,),) = query(
        db_url,
        "SELECT min(s) FROM (SELECT min(start) AS s FROM open_intervals "
        "UNION ALL SELECT min(start) FROM online_intervals) AS starts",
    )
    return None if found is None else int(found)


def job_report(db_url: str) -> dict[str, Any]:
    rows = query(
        db_url,
        "SELECT job_id, status, extract(epoch FROM finished_at - started_at), error "
        "FROM job_runs ORDER BY id",
    )
    jobs: dict[str, dict[str, Any]] = {}
    for job_id, status, seconds, error in rows:
        job = jobs.setdefault(job_id, {"runs": 0, "statuses": {}, "seconds": [], "errors": []})
        job["runs"] += 1
        job["statuses"][status] = job["statuses"].get(status, 0) + 1
        if seconds is not None:
            job["seconds"].append(round(float(seconds), 1))
        if error:
            job["errors"].append(str(error)[:200])
    for job in jobs.values():
        seconds = sorted(job.pop("seconds"))
        job["median_s"] = seconds[len(seconds) // 2] if seconds else None
        job["max_s"] = seconds[-1] if seconds else None
        job["errors"] = sorted(set(job["errors"]))[:5]
    return jobs


def soak_env(db_url: str, sim_url: str, work: Path, key: Path) -> dict[str, str]:
    """The environment `rewards serve` runs in: this run's database, archive and feed."""
    return {
        **os.environ,
        "REWARDS_DATABASE_URL": db_url,
        "REWARDS_ARCHIVE_URL": str(work / "archive"),
        "REWARDS_UPTIME_API_URL": sim_url,
        "REWARDS_UPTIME_API_TOKEN": TOKEN,
        "REWARDS_SEASON": "ignition-s2",
        "REWARDS_DEV_ISSUER_ENABLED": "true",
        "REWARDS_DEV_ISSUER_KEY_FILE": str(key),
        "REWARDS_RATE_LIMIT_PER_IP": "1000000/minute",
        "REWARDS_HEARTBEAT_DB_WINDOW_S": "0",
    }


def take_sample(
    db_url: str, started: float, first_mark: int | None, pid: int, samples: list[dict[str, Any]]
) -> int | None:
    """Append where the ingest stands to `samples`; returns the feed's start (µs) once
    known, `first_mark` until then."""
    pages, mark = progress(db_url)
    elapsed = time.monotonic() - started
    if first_mark is None and mark is not None:
        first_mark = feed_start(db_url)
    fleet_s = 0.0 if mark is None or first_mark is None else (mark - first_mark) / 1e6
    samples.append(
        {
            "wall_s": round(elapsed),
            "pages": pages,
            "fleet_s_ingested": round(fleet_s),
            "live_lag_s": round(max(0.0, elapsed - fleet_s)),
            "serve_rss_mib": peak_rss_mib(pid),
        }
    )
    return first_mark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=600_000)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0, help="API requests per second")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    sim, sim_url = start_simulator(argparse.Namespace(devices=args.devices, days=30))
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"rewards_soak_{os.getpid()}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    key = work / "dev.pem"
    env = soak_env(db_url, sim_url, work, key)
    report: dict[str, Any] = {"devices": args.devices, "minutes": args.minutes, "rate": args.rate}
    reference: dict[str, Any] | None = None
    samples: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    server = serve(env)
    try:
        issuer = dev_issuer(get_settings(dev_issuer_key_file=key))
        now = datetime.now(UTC)
        rng = random.Random(3)
        owners = [f"owner-{rng.randrange(max(1, args.devices // 5)):05d}" for _ in range(1_000)]
        supplier = [
            (
                "/v1/supplier/eligibility?limit=500",
                issuer.token(o, ["supplier"], now=now, ttl=timedelta(hours=3)),
            )
            for o in owners
        ]
        started = time.monotonic()
        first_mark: int | None = None
        while time.monotonic() - started < args.minutes * 60:
            # a minute of supplier load, then a sample of where the ingest stands
            loads.append(asyncio.run(api_load.load(supplier, args.rate, 50, 16)))
            first_mark = take_sample(db_url, started, first_mark, server.pid, samples)
            print(json.dumps(samples[-1]), flush=True)
        reference = asyncio.run(api_load.load([("/healthz", None)], args.rate, 30, 16))
        report["serve_peak_rss_mib"] = peak_rss_mib(server.pid)
        report["simulator_peak_rss_mib"] = peak_rss_mib(sim.pid)
    finally:
        server.terminate()
        server.wait(60)
        sim.terminate()
    latencies = sorted(x for run in loads for x in [run["p50_ms"]])
    report.update(
        {
            "samples": samples,
            "api_per_minute": [
                {k: run[k] for k in ("p50_ms", "p99_ms", "max_ms", "failures", "errors")}
                for run in loads
            ],
            "api_p50_ms_median": latencies[len(latencies) // 2] if latencies else None,
            "api_p99_ms_worst": max((run["p99_ms"] for run in loads), default=None),
            "reference_healthz": reference,
            "jobs": job_report(db_url),
            "load_tool_peak_rss_mib": peak_rss_mib(os.getpid()),
        }
    )
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    (OUT / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
