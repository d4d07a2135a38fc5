"""`rewards demo`: the April 2024 story, end to end, on the embedded SQLite default.

Simulates the fleet, serves it over real HTTP with faults on, ingests it, shows the
collapse at the forced upgrade in the online intervals, the incident the outage detector
proposes, snapshot v1 (no incident: eligibility collapses), the admin's confirmation,
snapshot v2, the diff, publishing, the finance export and one supplier's Merkle proof.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.status import Status
from rich.table import Table
from sqlalchemy import Engine

from jobs.ingest import JOB_IDS, pull_job
from rewards.console import print_diff
from rewards.core import DetectorSettings, SeasonPolicy, check_proof_document
from rewards.services.archive import archived_heartbeats, open_archive
from rewards.services.audit_bundle import write_audit_bundle
from rewards.services.database import open_database, upgrade
from rewards.services.eligibility_view import refresh_view
from rewards.services.exports import export, verify_export
from rewards.services.incidents import decide, detect
from rewards.services.ingest import IngestReport
from rewards.services.intervals import stored_intervals
from rewards.services.public_bundle import CLAIMS, write_public_files
from rewards.services.publication import publish
from rewards.services.publication_key import publication_key
from rewards.services.records import SnapshotRecord
from rewards.services.reproduce import reproduce
from rewards.services.runs import RunContext, exclusive_run
from rewards.services.snapshot_runs import Stages, run_snapshot
from rewards.services.snapshots import Diff, diff, label, proof, stored_rows, stored_suppliers
from rewards.settings import REPO_ROOT, Settings, get_settings
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
    """The story's thirteen steps on a fresh database in `workdir`, told on `console`."""
    started = time.monotonic()
    url, engine = _fresh_database(workdir)
    spec = FleetSpec(
        seed=2024,
        devices=devices,
        days=days,
        scenario="april-2024",
        heartbeat_period_s=policy.heartbeat_period_us // 1_000_000,
        bad_record_rate=0.0002,
    )
    console.print(
        f"[bold]1.[/] simulating {devices} GPUs from {spec.start:%Y-%m-%d} for "
        f"{days} days; forced upgrade at {FORCED_UPGRADE:%Y-%m-%d %H:%MZ}"
    )
    clock = lambda: datetime.now(UTC)  # noqa: E731
    if not _ingest_from_simulator(engine, url, policy, spec, console, clock):
        return
    archived = archived_heartbeats(open_archive(str(workdir / "archive"))).height
    _show_intervals(engine, archived, spec, console)
    owner = _snapshot_story(engine, policy, workdir, console, clock)
    archive = open_archive(str(workdir / "archive"))  # where step 2's pulls archived to
    refresh_view(
        engine,
        policy,
        trigger="demo",
        clock=clock,
        lock_ttl=timedelta(minutes=10),
        archive=archive,
    )
    console.print(pages_hint(workdir / "rewards.db", policy, owner=owner))
    console.print(f"done in {time.monotonic() - started:.1f} s")
    engine.dispose()


def _fresh_database(workdir: Path) -> tuple[str, Engine]:
    """An empty, migrated SQLite database in `workdir` (emptied first): its URL and engine."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    url = f"sqlite:///{workdir / 'rewards.db'}"
    upgrade(url)
    return url, open_database(url)


def _ingest_from_simulator(
    engine: Engine,
    url: str,
    policy: SeasonPolicy,
    spec: FleetSpec,
    console: Console,
    clock: Callable[[], datetime],
) -> bool:
    """Step 2: serve the fleet over real HTTP with faults on and pull both streams from it;
    False when a pull stopped (said on `console`)."""
    token = secrets.token_urlsafe(24)
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
            archive_url=str(Path(url.removeprefix("sqlite:///")).with_name("archive")),
            uptime_api_url=server.url,
            uptime_api_token=token,
            backoff_base_s=0.01,
            page_size=20_000,
        )
        for stream in ("devices", "heartbeats"):
            run = _pull(engine, settings, policy, stream, console, clock)
            if run.error:
                console.print(f"[red]{stream} stopped: {run.error}")
                return False
            console.print(
                f"   {stream}: {run.pulled:,} records over {run.pages} pages, "
                f"{run.quarantined} quarantined, after {simulator.requests} requests"
            )
    return True


def _pull(
    engine: Engine,
    settings: Settings,
    policy: SeasonPolicy,
    stream: str,
    console: Console,
    clock: Callable[[], datetime],
) -> RunContext:
    """One recorded pull of `stream`, as the scheduler would run it, its progress shown."""
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
    return run


def _show_intervals(engine: Engine, archived: int, spec: FleetSpec, console: Console) -> None:
    """Step 3: what was stored (`archived` distinct heartbeats), and the fleet online around
    the forced upgrade."""
    intervals = stored_intervals(engine)
    console.print(
        f"[bold]3.[/] {archived:,} distinct heartbeats in the archive, kept in the database "
        f"as {intervals.height:,} online intervals"
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
        if moment < spec.start + timedelta(days=spec.days):
            table.add_row(f"{moment:%Y-%m-%d %H:%M}", f"{online_at(intervals, moment):,}")
    console.print(table)


PAGES_PORT = 8700


def pages_hint(database: Path, policy: SeasonPolicy, *, owner: str) -> str:
    """Step 11: where the web pages of this database open, and how each role signs in."""
    settings = (
        f"REWARDS_DATABASE_URL=sqlite:///{database} REWARDS_SEASON={policy.season_id} "
        "REWARDS_DEV_ISSUER_ENABLED=true"
    )
    return (
        "[bold]13.[/] the web pages: serve them on this database with\n"
        f"   {settings} .venv/bin/rewards api --port {PAGES_PORT}\n"
        f"   (or run [bold]rewards demo --serve[/]), then open "
        f"http://127.0.0.1:{PAGES_PORT}/app\n"
        "   and sign in on the development issuer's form (subject, then tick the role):\n"
        f"     supplier: subject {owner}, role supplier\n"
        "     admin:    subject demo-admin, role admin\n"
        "     finance:  subject demo-finance, role finance\n"
        "   API tokens for the same users: "
        f"{settings} .venv/bin/rewards dev-token --sub demo-admin --role admin"
    )


def _snapshot_story(
    engine: Engine,
    policy: SeasonPolicy,
    workdir: Path,
    console: Console,
    clock: Callable[[], datetime],
) -> str:
    """Steps 4 to 10; returns the supplier whose proof was checked."""
    proposals = detect(engine, policy, now=datetime.now(UTC), settings=DetectorSettings())
    everything = range(policy.epoch_count)
    lock = timedelta(minutes=10)

    def snapshot(reason: str, by: str) -> SnapshotRecord:
        stages = Stages()
        with console.status(f"snapshot: {reason} ...") as status:
            stages.on_stage = lambda name: status.update(f"snapshot ({reason}): {name} ...")
            made = run_snapshot(
                engine,
                policy,
                epochs=everything,
                trigger="manual",
                triggered_by=by,
                reason=reason,
                clock=clock,
                lock_ttl=lock,
                key=publication_key(get_settings().publication_key_path),
                stages=stages,
                archive=open_archive(str(workdir / "archive")),
                keep=workdir / "snapshot-inputs",
            ).snapshot
        took = sum(stages.seconds.values())
        console.print(
            f"   {label(made)} (draft): {made.eligible_device_epochs:,} eligible device-epochs "
            f"of {made.device_epoch_rows:,}; {made.total_paid:,} base units to "
            f"{made.suppliers:,} suppliers; merkle root {made.merkle_root[:16]}... ({took:.1f} s)",
            highlight=False,
        )
        return made

    console.print("[bold]4.[/] snapshot v1, with no incident declared:")
    v1 = snapshot("no incident declared", "demo-admin")
    drops = [i for i in proposals if i.source == "detector:fleet-drop"]
    for incident in proposals:
        console.print(
            f"[bold]5.[/] the outage detector proposes [bold]{incident.id}[/]: "
            f"{incident.start:%Y-%m-%d %H:%MZ} to {incident.end:%Y-%m-%d %H:%MZ} "
            f"({incident.reason})",
            highlight=False,
        )
    for incident in drops:
        decide(engine, incident.id, status="confirmed", by="demo-admin", now=datetime.now(UTC))
        console.print(f"   demo-admin confirms {incident.id} (written to the audit log)")
    console.print("[bold]6.[/] snapshot v2, rerun with the incident confirmed:")
    v2 = snapshot("forced-upgrade incident confirmed", "demo-admin")

    _eligibility_table(engine, policy, v1, v2, console)
    console.print("[bold]7.[/] the diff finance reviews:")
    changes = diff(engine, v1, v2)
    print_diff(changes, console)

    return _publish_export_prove(engine, v2, changes, workdir, console, clock)


def _eligibility_table(
    engine: Engine, policy: SeasonPolicy, v1: SnapshotRecord, v2: SnapshotRecord, console: Console
) -> None:
    everything = range(policy.epoch_count)
    rows = {s.version: stored_rows(engine, s) for s in (v1, v2)}
    table = Table(
        "epoch (UTC day)",
        f"eligible in {label(v1)}",
        f"eligible in {label(v2)}",
        title="Eligible GPUs per day (DESIGN 4)",
    )
    for epoch in everything:
        day = policy.start + timedelta(microseconds=epoch * policy.epoch_length_us)
        counts = [int(r.filter(pl.col("epoch") == epoch)["eligible"].sum()) for r in rows.values()]
        marker = " <- forced upgrade" if day.date() == FORCED_UPGRADE.date() else ""
        table.add_row(f"{day:%Y-%m-%d}{marker}", f"{counts[0]:,}", f"{counts[1]:,}")
    console.print(table)


VERIFIER = REPO_ROOT / "tools" / "verify_payout.py"


def _standalone(*args: object) -> str:
    """What tools/verify_payout.py (standard library only, no engine) says of `args`."""
    done = subprocess.run(  # noqa: S603 - our own script, our own file names
        [sys.executable, "-I", str(VERIFIER), *map(str, args)],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said = (done.stdout or done.stderr).strip().splitlines()
    return ("" if done.returncode == 0 else "[red]") + (
        said[0] if said else f"exit {done.returncode}"
    )


def _public_bundle(
    engine: Engine, v2: SnapshotRecord, proof_file: Path, workdir: Path, console: Console
) -> None:
    """The supplier checks their proof with the standalone verifier; the public bundle;
    the audit bundle, reproduced."""
    console.print(
        "    the supplier checks it without the engine: python3 tools/verify_payout.py proof "
        f"... --root ...: {_standalone('proof', proof_file, '--root', v2.merkle_root)}",
        highlight=False,
    )
    public = workdir / f"public-{label(v2)}"
    manifest = write_public_files(engine, v2, public)
    console.print(
        f"[bold]11.[/] the public bundle in {public} (claims file with every leaf and its "
        f"proof, pseudonymous; totals; policy; manifest; {manifest['files'][CLAIMS]['bytes']:,} "
        f"bytes of claims): {_standalone('bundle', public)}",
        highlight=False,
    )
    audit = workdir / f"audit-{label(v2)}"
    key = publication_key(get_settings().publication_key_path)
    write_audit_bundle(engine, v2, key=key, kept=workdir / "snapshot-inputs", out=audit)
    checks = reproduce(audit)  # from the files alone: no database, no settings
    failed = [c.name for c in checks if c.ok is False]
    console.print(
        f"[bold]12.[/] the audit bundle in {audit} (inputs exactly as fingerprinted, policy, "
        f"salts, export; finance only): rewards snapshot reproduce {audit} recomputes "
        + (
            f"{label(v2)}'s fingerprint, content hash, root and export files: all "
            f"{sum(c.ok is True for c in checks)} checks match"
            if not failed
            else f"[red]{len(failed)} mismatches: {', '.join(failed)}[/]"
        ),
        highlight=False,
    )


def _publish_export_prove(
    engine: Engine,
    v2: SnapshotRecord,
    changes: Diff,
    workdir: Path,
    console: Console,
    clock: Callable[[], datetime],
) -> str:
    lock = timedelta(minutes=10)
    publish(engine, v2, by="demo-finance", clock=clock, lock_ttl=lock)
    console.print(f"[bold]8.[/] demo-finance publishes {label(v2)} (audited)")
    export_dir = workdir / f"export-{label(v2)}"
    manifest = export(engine, v2, export_dir)
    problems = verify_export(export_dir)
    console.print(
        f"[bold]9.[/] finance export in {export_dir}: {manifest['rows']['device_epochs']:,} "
        f"device-epochs, {manifest['rows']['suppliers']:,} suppliers, "
        f"{manifest['totals']['paid']:,} base units; manifest "
        + ("verifies" if not problems else f"[red]does not verify: {problems}[/]"),
        highlight=False,
    )
    owner = changes.summary.largest[0][0] if changes.summary.largest else None
    owner = owner or stored_suppliers(engine, v2).get_column("owner_id")[0]
    document = proof(engine, v2, owner, publication_key(get_settings().publication_key_path))
    proof_file = workdir / f"proof-{owner}.json"
    proof_file.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    console.print(
        f"[bold]10.[/] {owner} is paid {document['amount_decimal']} tokens in {label(v2)}; "
        f"their proof ({len(document['proof'])} steps) is in {proof_file} and "
        + ("verifies" if check_proof_document(document, v2.merkle_root) else "[red]FAILS[/]")
        + f" against the published root {v2.merkle_root}",
        highlight=False,
    )
    _public_bundle(engine, v2, proof_file, workdir, console)
    console.print(
        f"database: {workdir / 'rewards.db'} (try: REWARDS_DATABASE_URL=sqlite:///"
        f"{workdir / 'rewards.db'} rewards snapshot list)",
        highlight=False,
    )
    return owner
