"""`rewards demo`: the April 2024 story, end to end, on the embedded SQLite default.

Simulates the fleet, serves it over real HTTP with faults on, ingests it, shows the
collapse at the forced upgrade in the online intervals, the incident the outage detector
proposes, and eligibility before and after an admin confirms it. Snapshots come next.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.status import Status
from rich.table import Table

from jobs.ingest import JOB_IDS, pull_job
from rewards.core.outages import DetectorSettings
from rewards.core.policy import SeasonPolicy
from rewards.services.database import open_database, upgrade
from rewards.services.eligibility import compute_from_database
from rewards.services.files import write_parquet
from rewards.services.incidents import decide, detect
from rewards.services.ingest import IngestReport
from rewards.services.intervals import stored_heartbeat_count, stored_intervals
from rewards.services.runs import exclusive_run
from rewards.settings import get_settings
from rewards.sim.fleet import FORCED_UPGRADE, FleetSpec
from rewards.sim.server import BackgroundServer, Faults, UptimeSimulator, create_sim_app


def online_at(intervals: pl.DataFrame, moment: datetime) -> int:
    """Devices online at `moment`."""
    return intervals.filter((pl.col("start") <= moment) & (pl.col("end") > moment)).height


def _show_progress(status: Status, stream: str) -> Callable[[IngestReport], None]:
    def show(report: IngestReport) -> None:
        status.update(f"ingesting {stream}: {report.pulled:,} records, {report.retries} retries")

    return show


def run_demo(
    policy: SeasonPolicy, *, devices: int, days: int, workdir: Path, console: Console
) -> None:
    started = time.monotonic()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    url = f"sqlite:///{workdir / 'rewards.db'}"
    upgrade(url)
    engine = open_database(url)
    token = secrets.token_urlsafe(24)
    spec = FleetSpec(
        seed=2024, devices=devices, days=days, scenario="april-2024", bad_record_rate=0.0002
    )
    console.print(
        f"[bold]1.[/] simulating {devices} GPUs from {spec.start:%Y-%m-%d} for "
        f"{days} days; forced upgrade at {FORCED_UPGRADE:%Y-%m-%d %H:%MZ}"
    )
    faults = Faults(
        error_rate=0.05, throttle_rate=0.01, retry_after_s=0, truncate_rate=0.02, seed=7
    )
    simulator = UptimeSimulator(spec, token=token, faults=faults)
    with BackgroundServer(create_sim_app(simulator)) as server:
        console.print(
            f"[bold]2.[/] uptime API simulator on {server.url} "
            "(5% HTTP 500, 2% truncated bodies, 1% HTTP 429)"
        )
        settings = get_settings(
            database_url=url,
            uptime_api_url=server.url,
            uptime_api_token=token,
            backoff_base_s=0.01,
            page_size=20_000,
        )
        clock = lambda: datetime.now(UTC)  # noqa: E731
        for stream in ("devices", "heartbeats"):
            with (
                exclusive_run(
                    engine,
                    job_id=JOB_IDS[stream],
                    trigger="demo",
                    clock=clock,
                    ttl=timedelta(minutes=10),
                ) as run,
                console.status(f"ingesting {stream} ...") as status,
            ):
                pull_job(
                    engine,
                    settings,
                    policy,
                    stream,
                    clock=clock,
                    on_page=_show_progress(status, stream),
                )(run)
            if run.error:
                console.print(f"[red]{stream} stopped: {run.error}")
                return
            console.print(
                f"   {stream}: {run.pulled:,} records over {run.pages} pages, "
                f"{run.quarantined} quarantined, after {simulator.requests} requests"
            )
    intervals = stored_intervals(engine)
    stored = stored_heartbeat_count(engine)
    console.print(
        f"[bold]3.[/] {stored:,} distinct heartbeats stored as "
        f"{intervals.height:,} online intervals"
    )
    table = Table("moment (UTC)", "GPUs online", title="The fleet around the forced upgrade")
    for offset in (
        timedelta(minutes=-5),
        timedelta(minutes=5),
        timedelta(hours=6),
        timedelta(hours=24),
        timedelta(hours=40),
    ):
        moment = FORCED_UPGRADE + offset
        if moment < spec.start + timedelta(days=days):
            table.add_row(f"{moment:%Y-%m-%d %H:%M}", f"{online_at(intervals, moment):,}")
    console.print(table)
    proposals = detect(engine, policy, now=datetime.now(UTC), settings=DetectorSettings())
    for incident in proposals:
        console.print(
            f"[bold]4.[/] the outage detector proposes [bold]{incident.id}[/]: "
            f"{incident.start:%Y-%m-%d %H:%MZ} to {incident.end:%Y-%m-%d %H:%MZ} "
            f"({incident.reason})",
            highlight=False,
        )
    before, _ = compute_from_database(engine, policy)
    drops = [i for i in proposals if i.source == "detector:fleet-drop"]
    for incident in drops:
        decide(engine, incident.id, status="confirmed", by="demo-admin", now=datetime.now(UTC))
    after, _ = compute_from_database(engine, policy)
    table = Table(
        "epoch (UTC day)",
        "eligible, no incident",
        "eligible, incident confirmed",
        title="Eligible GPUs per day (DESIGN 4)",
    )
    for epoch in range(4, min(days, 7)):
        start = policy.start + timedelta(days=epoch)
        counts = [
            int(r.filter(pl.col("epoch") == epoch)["eligible"].sum()) for r in (before, after)
        ]
        table.add_row(f"{start:%Y-%m-%d}", f"{counts[0]:,}", f"{counts[1]:,}")
    if drops:
        console.print(
            f"[bold]5.[/] confirmed {drops[0].id} as demo-admin (audited) and recomputed:"
        )
    console.print(table)
    export = workdir / "intervals.parquet"
    write_parquet(intervals.select("device_id", "start", "end"), export)
    console.print(
        f"database: {workdir / 'rewards.db'}\nintervals: {export}\n"
        f"done in {time.monotonic() - started:.1f} s"
    )
    engine.dispose()
