"""Ingestion at the fleet's shape (issue 14): the streaming simulator at 600,000 devices and
a 60 s period, in its own process, pulled by the engine's own ingest service (archive
included) into PostgreSQL and SQLite, each in a process of its own.

Reported per dialect: heartbeats per second for each window of fleet time (the simulator
delivers in windows of 30 minutes at this size), the last window's rate over the first's
(the rate must not fall as the tables grow), database growth per heartbeat (every table,
indexes included), archive bytes per heartbeat, the ingest process's peak RSS, and what a
30-day season would cost in database and archive bytes at those rates. The reference is
the fleet's peak, 10,000 heartbeats a second: the targets are 5x it on PostgreSQL,
last/first at least 0.9, under 15 B a heartbeat in the database and 8 in the archive, and
under 2 GiB of RSS. Results: bench/out/fleet_ingest.json.

    .venv/bin/python bench/fleet_ingest.py [--devices 600000] [--hours 2]
        [--dialects postgresql,sqlite] [--page-size 10000] [--db-window-s 0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import PG_ADMIN, TOKEN, start_simulator  # noqa: E402
from bench.memory import peak_rss_mib  # noqa: E402
from rewards.archive import HeartbeatArchive  # noqa: E402

PEAK = 10_000
SIMULATOR_PID: list[int] = []  # the simulator's process, for its CPU time
SEASON_HEARTBEATS = 600_000 * 1440 * 30  # a 30-day season of the fleet


class Enough(Exception):
    """The run has pulled the fleet time it was asked for."""


def worker(args: argparse.Namespace) -> None:
    """One dialect's ingest, in this process: a line of JSON per page to --log."""
    from rewards.db.engine import make_engine
    from rewards.db.migrate import upgrade
    from rewards.seasons import load_policy
    from rewards.services.ingest import IngestReport, pull_stream
    from rewards.sim.feed import window_minutes
    from rewards.uptime.client import UptimeClient

    upgrade(args.db)
    engine = make_engine(args.db)
    policy = load_policy(ROOT / "config" / "seasons" / "ignition-s2.toml")
    minutes = window_minutes(args.devices, 60_000_000)
    windows = max(1, round(args.hours * 60 / minutes))
    archive = HeartbeatArchive(args.archive)
    started = time.perf_counter()
    with Path(args.log).open("w") as log:

        def page_done(report: IngestReport) -> None:
            window = int((report.cursor or "0.0").split(".")[0])
            log.write(
                json.dumps(
                    {
                        "t": time.perf_counter() - started,
                        "pulled": report.pulled,
                        "window": window,
                        "rss_now": rss_now(),
                    }
                )
                + "\n"
            )
            if window >= windows:
                raise Enough

        with UptimeClient(args.url, TOKEN) as client:
            try:
                report = pull_stream(
                    engine=engine,
                    client=client,
                    stream="heartbeats",
                    policy=policy,
                    page_size=args.page_size,
                    max_skew=timedelta(minutes=5),
                    clock=lambda: datetime.now(UTC),
                    on_page=page_done,
                    archive=archive,
                    db_window=timedelta(seconds=args.db_window_s),
                )
                if report.error:
                    raise SystemExit(f"ingest failed: {report.error}")
            except Enough:
                pass
        usage = resource.getrusage(resource.RUSAGE_SELF)
        tail = {
            "rss": peak_rss_mib() * 2**20,
            "window_minutes": minutes,
            "ingest_cpu_s": usage.ru_utime + usage.ru_stime,
            "database_cpu_s": database_cpu_s(engine),
        }
        log.write(json.dumps(tail) + "\n")
    engine.dispose()


def rss_now() -> int:
    """This process's resident set now, in bytes (the log shows where a peak came from)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def cpu_s(pid: int) -> float:
    """User and system CPU seconds process `pid` has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu_s(engine: Any) -> float | None:
    """CPU seconds of the PostgreSQL backends serving this database (on this machine)."""
    if engine.dialect.name != "postgresql":
        return None  # SQLite runs inside the ingest process: its CPU is the ingest's
    with engine.connect() as c:
        pids = c.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        return round(sum(cpu_s(int(p)) for p in pids), 1)


def database_bytes(db_url: str) -> int:
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    engine = create_engine(db_url)
    with engine.connect() as c:
        size = int(c.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    engine.dispose()
    return size


def open_row_bytes(db_url: str) -> int:
    """Bytes of the open-interval rows, indexes included: one row per device, so a fixed
    cost of the fleet's size that does not grow with time."""
    engine = create_engine(db_url)
    with engine.connect() as c:
        if db_url.startswith("postgresql"):
            sql = "SELECT pg_total_relation_size('open_intervals')"
        else:  # SQLite's dbstat: the pages of the table and of its indexes
            sql = (
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN (SELECT name "
                "FROM sqlite_schema WHERE tbl_name = 'open_intervals')"
            )
        found = int(c.execute(text(sql)).scalar_one())
    engine.dispose()
    return found


def interval_rows(db_url: str) -> dict[str, Any]:
    """Interval rows stored, and on PostgreSQL their bytes per row, indexes included, as
    stored (after the run's updates) and after a VACUUM FULL (their size at rest): all of
    them, and the closed ones alone (a season's ~45M rows are nearly all closed; the open
    rows, one per device and kept with room for in-place updates, are a fixed cost)."""
    engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    tables = ("online_intervals", "open_intervals")
    with engine.connect() as c:
        counts = {t: int(c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in tables}
        found: dict[str, Any] = {
            "interval_rows": sum(counts.values()),
            "closed_rows": counts[tables[0]],
        }
        if db_url.startswith("postgresql"):

            def size(table: str) -> int:
                return int(
                    c.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar_one()
                )

            found["interval_bytes_per_row"] = round(
                sum(size(t) for t in tables) / max(found["interval_rows"], 1), 1
            )
            for t in tables:
                c.execute(text(f"VACUUM FULL {t}"))
            found["interval_bytes_per_row_at_rest"] = round(
                sum(size(t) for t in tables) / max(found["interval_rows"], 1), 1
            )
            found["closed_bytes_per_row_at_rest"] = round(
                size(tables[0]) / max(counts[tables[0]], 1), 1
            )
    engine.dispose()
    return found


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def measure(db_url: str, url: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Run one dialect's ingest in a child process and summarise what it logged."""
    log, archive = tmp / f"{os.getpid()}-{time.monotonic_ns()}.jsonl", tmp / "archive"
    empty = database_bytes(db_url) if not db_url.startswith("sqlite") else 0
    command = [
        sys.executable, __file__, "--worker", "--db", db_url, "--url", url,
        "--archive", str(archive), "--log", str(log), "--devices", str(args.devices),
        "--hours", str(args.hours), "--page-size", str(args.page_size),
        "--db-window-s", str(args.db_window_s),
    ]  # fmt: skip
    sim_before = cpu_s(SIMULATOR_PID[0]) if SIMULATOR_PID else 0.0
    done = subprocess.run(command, check=False)
    sim_cpu = cpu_s(SIMULATOR_PID[0]) - sim_before if SIMULATOR_PID else None
    if done.returncode != 0:
        raise SystemExit(f"the ingest worker failed ({done.returncode})")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    pages, tail = lines[:-1], lines[-1]
    found = summarise(pages, tail, database_bytes(db_url) - empty, tree_bytes(archive))
    # a season's database: the open rows once (one per device), the rest in proportion
    fixed, grown = open_row_bytes(db_url), found["db_bytes_per_heartbeat"] * found["heartbeats"]
    found["open_row_bytes"] = fixed
    found["season_db_gb"] = round(
        (fixed + (grown - fixed) / found["heartbeats"] * SEASON_HEARTBEATS) / 1e9, 1
    )
    found.update(interval_rows(db_url))
    per_hb = 1e6 / found["heartbeats"]
    found["cpu_us_per_heartbeat"] = {
        "ingest": round(tail["ingest_cpu_s"] * per_hb, 1),
        "database": round(tail["database_cpu_s"] * per_hb, 1)
        if tail["database_cpu_s"] is not None
        else None,
        "simulator": round(sim_cpu * per_hb, 1) if sim_cpu is not None else None,
    }
    # what the archive-upkeep job makes of it: today's files compacted, and once the day
    # has settled, sorted by device (vacuumed at once here, to count only live files)
    table, pulled = HeartbeatArchive(str(archive)), found["heartbeats"]
    for name, settle in (("compacted", None), ("sorted", date(9999, 1, 1))):
        started = time.perf_counter()
        table.upkeep(vacuum_hours=0, sort_before=settle)
        found[f"archive_{name}_bytes_per_heartbeat"] = round(tree_bytes(archive) / pulled, 2)
        found[f"archive_{name}_seconds"] = round(time.perf_counter() - started, 1)
    found["season_archive_gb"] = round(
        found["archive_sorted_bytes_per_heartbeat"] * SEASON_HEARTBEATS / 1e9, 1
    )
    return found


def summarise(
    pages: list[dict[str, Any]], tail: dict[str, Any], db_bytes: int, archive_bytes: int
) -> dict[str, Any]:
    minutes = tail["window_minutes"]

    def rates(span: int) -> list[dict[str, Any]]:
        """Heartbeats per second over each `span` minutes of fleet time (the last span,
        cut short by the stop, left out when there are others)."""
        found: list[dict[str, Any]] = []
        before = {"t": 0.0, "pulled": 0}
        for part in sorted({p["window"] * minutes // span for p in pages}):
            last = [p for p in pages if p["window"] * minutes // span == part][-1]
            count, seconds = last["pulled"] - before["pulled"], last["t"] - before["t"]
            found.append(
                {"from_minute": part * span, "heartbeats": count, "per_s": count / seconds}
            )
            before = last
        return found[:-1] if len(found) > 1 else found

    per_hour, per_10 = rates(60), rates(10)
    whole = per_hour if len(per_hour) > 1 else per_10
    chunks = [  # the rate over each 100 pages (a million heartbeats at the default page size)
        round((b["pulled"] - a["pulled"]) / (b["t"] - a["t"]))
        for a, b in zip(pages[::100], pages[100::100], strict=False)
    ]
    rss = [  # the largest resident set within each 100 pages, in MiB
        round(max(p["rss_now"] for p in pages[i : i + 100]) / 2**20)
        for i in range(0, len(pages), 100)
    ]
    pulled, seconds = pages[-1]["pulled"], pages[-1]["t"]
    return {
        "heartbeats": pulled,
        "seconds": round(seconds, 1),
        "per_s": round(pulled / seconds),
        "x_fleet_peak": round(pulled / seconds / PEAK, 2),
        "window_minutes": tail["window_minutes"],
        "per_fleet_hour": [{**w, "per_s": round(w["per_s"])} for w in per_hour],
        "per_fleet_10_minutes": [{**w, "per_s": round(w["per_s"])} for w in per_10],
        "last_over_first": round(whole[-1]["per_s"] / whole[0]["per_s"], 3),
        "last_over_first_of": "hours" if whole is per_hour else "10 minutes of fleet time",
        "per_100_pages": chunks,
        "db_bytes_per_heartbeat": round(db_bytes / pulled, 2),
        "archive_bytes_per_heartbeat": round(archive_bytes / pulled, 2),
        "season_archive_gb": round(archive_bytes / pulled * SEASON_HEARTBEATS / 1e9, 1),
        "peak_rss_mib": round(tail["rss"] / 2**20),
        "rss_mib_per_100_pages": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=600_000)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--dialects", default="postgresql,sqlite")
    parser.add_argument("--page-size", type=int, default=10_000)
    parser.add_argument("--db-window-s", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--db", "--url", "--archive", "--log"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    days = max(1, int(args.hours // 24) + 1)
    process, url = start_simulator(argparse.Namespace(devices=args.devices, days=days))
    SIMULATOR_PID.append(process.pid)
    results: dict[str, Any] = {
        "devices": args.devices,
        "hours": args.hours,
        "page_size": args.page_size,
        "db_window_s": args.db_window_s,
        "fleet_peak_per_s": PEAK,
    }
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"rewards_fleet_{os.getpid()}"
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        for dialect in args.dialects.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                db_url = {
                    "sqlite": f"sqlite:///{tmp}/bench.db",
                    "postgresql": PG_ADMIN.rsplit("/", 1)[0] + f"/{name}",
                }[dialect]
                found = measure(db_url, url, args, Path(tmp))
            results[dialect] = found
            print(
                f"{dialect:>10}: {found['heartbeats']:,} heartbeats in {found['seconds']} s = "
                f"{found['per_s']:,}/s ({found['x_fleet_peak']}x the fleet peak); "
                f"last/first ({found['last_over_first_of']}) {found['last_over_first']}; "
                f"database {found['db_bytes_per_heartbeat']} B/hb, archive "
                f"{found['archive_bytes_per_heartbeat']} B/hb as written, "
                f"{found['archive_compacted_bytes_per_heartbeat']} compacted, "
                f"{found['archive_sorted_bytes_per_heartbeat']} sorted (a season: "
                f"{found['season_db_gb']} GB + {found['season_archive_gb']} GB); "
                f"peak RSS {found['peak_rss_mib']} MiB; CPU µs a heartbeat "
                f"{found['cpu_us_per_heartbeat']}; {found['interval_rows']:,} interval rows"
                + (
                    f" at {found['interval_bytes_per_row']} B each "
                    f"({found['interval_bytes_per_row_at_rest']} after VACUUM FULL; "
                    f"the closed ones {found['closed_bytes_per_row_at_rest']})"
                    if "interval_bytes_per_row" in found
                    else ""
                )
            )
            print(f"{'':>12}per 100 pages: {found['per_100_pages']}")
            for w in found["per_fleet_10_minutes"]:
                print(f"{'':>12}fleet minute {w['from_minute']}: {w['per_s']:,}/s")
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        process.terminate()
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "fleet_ingest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
