"""A season's fleet for the pages benchmark (bench/pages.py): bench/snapshot.py's fleet (30
epochs of online intervals at a real fleet's density, 2-3 a device-day, with gaps and the
April-2024 forced-upgrade drop on day 5), but with one large supplier owning `owned` devices
(every n-th device id, so they are spread over the id space and its buckets) and the rest
owned six to a supplier, as in load_season. No incident is stored: the detector proposes
the drop, as it would in production.

`tell_story` then brings the database to where every page has something to show: v1
published without the incident, v2 published with it confirmed (finance's adjustments are
between published versions), the incident proposed again (so its impact page previews
confirming it), v3 run since (a draft, to preview publishing), and the eligibility view as
of the season's end. `probes` says which addresses of each page show that story."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import numpy as np
import polars as pl
from fleet_intervals import density, fleet_intervals
from snapshot import MODELS, POLICY

from rewards.core.frames import to_us
from rewards.core.outages import DetectorSettings
from rewards.db.bulk import load_frame
from rewards.db.engine import make_engine
from rewards.db.heartbeats import insert_intervals, settle_open_intervals
from rewards.services.eligibility_view import refresh_view
from rewards.services.incidents import decide, declare, detect
from rewards.services.publication import publish
from rewards.services.publication_key import publication_key
from rewards.services.records import SnapshotRecord
from rewards.services.snapshot_runs import run_snapshot
from rewards.services.snapshots import label
from rewards.settings import get_settings

BIG = "owner-big"  # the large supplier's id (and the subject it signs in as)


def owners(device_ids: pl.Series, owned: int) -> pl.Series:
    """Each device's owner: every n-th device (n = devices // owned, the first `owned` of
    those) is BIG's; the others go six to a supplier (`owner-000000`, ...), in id order."""
    count = device_ids.len()
    if not 0 <= owned <= count:
        raise SystemExit(f"--owned {owned}: must be between 0 and the fleet's {count} devices")
    big = np.zeros(count, dtype=bool)
    if owned:
        big[np.arange(owned) * (count // owned)] = True
    small = np.cumsum(~big) - 1  # the index of each device among the others
    names = np.char.add("owner-", np.char.zfill((small // 6).astype(str), 6))
    return pl.Series("owner_id", np.where(big, BIG, names))


def load_page_fleet(url: str, devices: int, owned: int) -> dict[str, int]:
    """Store the fleet's registry, metadata and intervals in the database at `url` (already
    migrated); returns its sizes."""
    intervals = fleet_intervals(POLICY, devices)
    ids = intervals.get_column("device_id").unique().sort()
    rng = np.random.default_rng(7)
    registry = pl.DataFrame({"device_id": ids}).with_columns(
        owners(ids, owned),
        pl.Series("gpu_model", rng.choice(MODELS, ids.len())),
        pl.Series("suspended", rng.random(ids.len()) < 0.01),
    )
    when = (POLICY.start - timedelta(days=30)).isoformat()
    engine = make_engine(url)
    with engine.begin() as connection:
        suppliers = registry.select(pl.col("owner_id").unique().sort())
        load_frame(connection, "suppliers", suppliers.with_columns(first_seen_at=pl.lit(when)))
        load_frame(connection, "devices", registry.select("device_id", first_seen_at=pl.lit(when)))
        load_frame(
            connection,
            "device_metadata",
            registry.select(
                "device_id",
                "owner_id",
                "gpu_model",
                gpu_count=pl.lit(1),
                status=pl.when("suspended").then(pl.lit("suspended")).otherwise(pl.lit("active")),
                registered_at=pl.lit(when),
                valid_from=pl.lit(when),
                actor=pl.lit("bench"),
                source=pl.lit("bench"),
                recorded_at=pl.lit(when),
            ),
        )
        insert_intervals(connection, intervals)  # stored as ingest stores them (elided)
        settle_open_intervals(connection)  # each device's latest is its open row
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    return {
        "devices": ids.len(),
        "suppliers": suppliers.height,
        "big_supplier_devices": int((registry.get_column("owner_id") == BIG).sum()),
        "intervals": intervals.height,
        "intervals_per_device_day": round(density(intervals, POLICY), 2),
        "season_start_us": to_us(POLICY.start),
    }


LOCK = timedelta(minutes=30)
BY = "bench"


def tell_story(url: str, *, draft: bool = True, settle: bool = True) -> dict[str, object]:
    """Detect the drop (or declare one if the detector proposes none), run and publish v1,
    confirm the incident, run and publish v2, set the incident back to proposed, run v3 (a
    draft) and build the eligibility view; returns the refs, the incident and each step's
    seconds. The browser tests leave out what only the timed pages need: the draft (its
    "draft" is then None) and settling the database before the measurement."""
    engine = make_engine(url)
    # the key `rewards api` reads with the same settings: the pages' proofs need it
    key = publication_key(get_settings().publication_key_path)
    seconds: dict[str, float] = {}
    began = time.perf_counter()

    def step(name: str) -> None:
        nonlocal began
        seconds[name] = round(time.perf_counter() - began, 1)
        print(f"  {name}: {seconds[name]} s", flush=True)
        began = time.perf_counter()

    after_season = POLICY.end + timedelta(days=1)
    proposed = [
        p.id
        for p in detect(engine, POLICY, now=after_season, settings=DetectorSettings())
        if p.source == "detector:fleet-drop"
    ]
    step("detect")

    def snapshot(reason: str) -> SnapshotRecord:
        return run_snapshot(
            engine, POLICY, epochs=range(POLICY.epoch_count), trigger="manual",
            triggered_by=BY, reason=reason, clock=lambda: datetime.now(UTC), lock_ttl=LOCK,
            key=key,
        ).snapshot  # fmt: skip

    def published(reason: str) -> SnapshotRecord:
        made = snapshot(reason)
        publish(engine, made, by=BY, clock=lambda: datetime.now(UTC), lock_ttl=LOCK)
        return made

    v1 = published("before the incident is decided")
    step("snapshot v1 + publish")
    if proposed:
        incident, source = proposed[0], "detector"
        decide(engine, incident, status="confirmed", by=BY, now=datetime.now(UTC))
    else:  # the forced upgrade's silence, as an admin would declare it
        incident, source = "bench-forced-upgrade", "declared (the detector proposed none)"
        forced = POLICY.start + timedelta(days=5, hours=8, minutes=4)
        declare(
            engine, incident_id=incident, start=forced, end=forced + timedelta(hours=1),
            recovery_deadline=timedelta(hours=48), scope={"all": True},
            reason="forced upgrade", by=BY, now=datetime.now(UTC),
        )  # fmt: skip
    v2 = published("with the incident confirmed")
    step("confirm + snapshot v2 + publish")
    decide(engine, incident, status="proposed", by=BY, now=datetime.now(UTC))
    v3 = snapshot("the incident proposed again") if draft else None
    step("unconfirm + snapshot v3 (draft)" if draft else "unconfirm")
    view = refresh_view(
        engine, POLICY, trigger=BY, clock=lambda: POLICY.end, lock_ttl=LOCK, force=True
    ).view
    step("eligibility view")
    # settle the database before measuring, as bench/api_load.py does (autovacuum analyzing
    # the fresh tables during the measurement made runs vary)
    if settle:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM (ANALYZE)")
            connection.exec_driver_sql("CHECKPOINT")
        step("vacuum + checkpoint")
    engine.dispose()
    return {
        "superseded": label(v1),
        "published": label(v2),
        "draft": label(v3) if v3 else None,
        "device_epoch_rows": v1.device_epoch_rows,
        "incident": incident,
        "incident_source": source,
        "view_rows": view.rows,
        "view_documents": view.owners,
        "story_s": seconds,
    }


@dataclass
class Probe:
    """One address to time: the route it fills, as whom, and what it should answer."""

    path: str
    role: str
    expect: int = 200
    note: str = ""
    fresh: bool = False  # forget cookies before each request (a first visit)
    paged: bool = False  # page 2 of its lists is timed too
    route: str = ""  # set from the key it is filed under


def probes(facts: dict[str, Any]) -> dict[str, list[Probe] | str]:
    """Each GET route's addresses to time, or why it cannot be timed. Page 2 of a paged list
    is added later, from the page's own "next" link."""
    v1, v2, v3 = facts["superseded"], facts["published"], facts["draft"]
    incident = quote(facts["incident"])
    device, search = facts["big_device"], facts["big_device"][:-2]
    diff = f"before={v1}&after={v2}"
    fill: dict[str, list[Probe] | str] = {
        "/app/sign-in": [
            Probe(
                "/app/sign-in?next=/app",
                "anonymous",
                302,
                "a first visit: off to the provider",
                fresh=True,
            )
        ],
        "/app/auth/callback": [],  # timed in sign-ins of its own: a code is good once
        "/app/signed-out": [Probe("/app/signed-out", "anonymous")],
        "/app": [Probe("/app", "supplier")],
        "/app/supplier": [
            Probe(
                "/app/supplier",
                "supplier",
                paged=True,
                note=f"{facts['big_supplier_devices']:,} devices",
            ),
            Probe(f"/app/supplier?q={search}", "supplier", note="search"),
            Probe("/app/supplier?state=offline", "supplier", note="filter: offline devices"),
            Probe("/app/supplier?show=missed", "supplier", note="filter: grid of misses"),
            Probe("/app/supplier", "small-supplier", note="6 devices, for comparison"),
        ],
        "/app/supplier/devices/{device_id}": [
            Probe(f"/app/supplier/devices/{device}", "supplier", note="own device")
        ],
        "/app/supplier/rewards": [Probe("/app/supplier/rewards", "supplier")],
        "/app/admin": [Probe("/app/admin", "admin", note="fleet chart kept 60 s a worker")],
        "/app/admin/snapshots": [Probe("/app/admin/snapshots", "admin")],
        "/app/admin/snapshots/diff": [
            Probe(f"/app/admin/snapshots/diff?{diff}", "admin", paged=True)
        ],
        "/app/admin/snapshots/diff.csv": [Probe(f"/app/admin/snapshots/diff.csv?{diff}", "admin")],
        "/app/admin/snapshots/{ref}/publish": [
            Probe(f"/app/admin/snapshots/{v3}/publish", "admin", note="the draft")
        ],
        "/app/admin/alerts": [Probe("/app/admin/alerts", "admin")],
        "/app/admin/incidents/new": [Probe("/app/admin/incidents/new", "admin")],
        "/app/admin/incidents/{incident_id}/edit": [
            Probe(f"/app/admin/incidents/{incident}/edit", "admin")
        ],
        "/app/admin/incidents/{incident_id}/impact": [
            Probe(f"/app/admin/incidents/{incident}/impact?change=confirm", "admin", paged=True)
        ],
        "/app/admin/incidents/{incident_id}/impact.csv": [
            Probe(f"/app/admin/incidents/{incident}/impact.csv?change=confirm", "admin")
        ],
        "/app/admin/devices": [
            Probe("/app/admin/devices", "admin"),
            Probe(f"/app/admin/devices?q={device}", "admin", 303, note="found: off to its page"),
        ],
        "/app/admin/devices/{device_id}": [Probe(f"/app/admin/devices/{device}", "admin")],
        "/app/admin/metadata": [
            Probe("/app/admin/metadata", "admin", paged=True),
            Probe(f"/app/admin/metadata?device={device}", "admin", note="one device's"),
        ],
        "/app/admin/audit": [
            Probe("/app/admin/audit", "admin", paged=True),
            Probe("/app/admin/audit?check=true", "admin", note="the chain verified"),
        ],
        "/app/finance": [Probe("/app/finance", "finance")],
        "/app/finance/snapshots/{ref}": [Probe(f"/app/finance/snapshots/{v2}", "finance")],
        "/app/finance/adjustments": [
            Probe(f"/app/finance/adjustments?paid={v1}&due={v2}", "finance")
        ],
        "/app/finance/snapshots/{ref}/export/{name}": [
            Probe(f"/app/finance/snapshots/{v2}/export/{name}", "finance")
            for name in (
                "device_epochs.csv",
                "device_epochs.parquet",
                "suppliers.csv",
                "suppliers.parquet",
                "manifest.json",
            )
        ],
        "/app/finance/adjustments.csv": [
            Probe(f"/app/finance/adjustments.csv?paid={v1}&due={v2}", "finance")
        ],
    }
    for route, filled in fill.items():
        for probe in filled if isinstance(filled, list) else []:
            probe.route = route
    return fill
