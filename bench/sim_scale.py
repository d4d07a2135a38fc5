"""The simulator at fleet scale (DESIGN 8, issue 14): a window of 600,000 devices on demand,
flat memory while paging through hours of the fleet, and `rewards sim serve` starting a
600,000-device, 30-day fleet in bounded memory. Times are printed, memory is checked.

A benchmark, not part of the suite (each check takes tens of seconds and gigabytes of
traffic); run it with `.venv/bin/pytest bench/sim_scale.py -s`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from rewards.core import to_us
from rewards.sim.fleet import FORCED_UPGRADE, FleetSpec, fleet_feed
from tests.processes import TOKEN, start_simulator

BIG = FleetSpec(seed=1, devices=600_000, days=30)


def test_the_forced_upgrade_collapses_600k_devices_in_one_window_without_the_season() -> None:
    feed = fleet_feed(BIG)
    at = (to_us(FORCED_UPGRADE) - BIG.start_us) // feed.window_us
    started = time.monotonic()
    before = feed.window(at - 10)  # ten minutes before: nothing made yet
    cold = time.monotonic() - started
    started = time.monotonic()
    after = feed.window(at + 10)
    warm = time.monotonic() - started
    print(
        f"600k devices, one {feed.window_us // 60_000_000}-min window: cold {cold:.2f} s, "
        f"next {warm:.2f} s, {before.height:,} deliveries"
    )
    online_before = before.get_column("device").n_unique()
    online_after = after.get_column("device").n_unique()
    assert online_before > 0.8 * BIG.devices
    assert online_after < 0.05 * online_before  # most of the fleet went silent
    # times are printed, not asserted (speed belongs in bench/): 0.5-1.6 s warm and 2-7 s
    # cold were measured on this 2-core machine under load


MEASURE_RSS = """
import json, sys
from rewards.sim.fleet import FleetSpec, fleet_feed
from rewards.sim.server import heartbeat_page

def rss_mb():
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmRSS"))
    return int(line.split()[1]) / 1024

spec = FleetSpec(seed=1, devices=600_000, days=3, heartbeat_period_s=600)
feed = fleet_feed(spec)
first = (22 * 3600 * 10**6) // feed.window_us  # 22:00 on the first day, across midnight
cursor, pages, rows, samples = f"{first}.0", 0, 0, []
while True:
    page, cursor, more = heartbeat_page(feed, cursor, 50_000)
    pages, rows = pages + 1, rows + page.height
    samples.append(rss_mb())
    if int(cursor.split(".")[0]) >= first + 5 * 3_600_000_000 // feed.window_us:
        break
print(json.dumps({"pages": pages, "rows": rows, "first": samples[0], "peak": max(samples)}))
"""


def test_memory_stays_flat_while_paging_through_hours_of_a_600k_fleet() -> None:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE_RSS], capture_output=True, text=True, check=True
    )
    measured = json.loads(done.stdout)
    print(measured)
    assert measured["rows"] > 10_000_000  # five hours of 600,000 devices at 10 minutes
    assert measured["peak"] - measured["first"] < 300


def test_serve_starts_600k_devices_over_30_days_quickly_in_bounded_memory() -> None:
    started = time.monotonic()
    sim = start_simulator(["--devices", "600000", "--days", "30"])
    try:
        took = time.monotonic() - started
        page = httpx.get(
            f"{sim.url}/v1/heartbeats",
            params={"limit": 50_000},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=120,
        )
        rss = next(
            line
            for line in Path(f"/proc/{sim.process.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS")
        )
        rss_mb = int(rss.split()[1]) / 1024
        print(f"serve started in {took:.1f} s; after a page: {rss_mb:.0f} MB")
    finally:
        sim.process.terminate()
        sim.process.wait(timeout=10)
    assert page.status_code == 200 and len(page.json()["heartbeats"]) == 50_000
    assert rss_mb < 1024  # the start time is printed, not asserted: 2.3-6.6 s measured
