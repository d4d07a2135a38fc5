"""Every GET page of the site, timed one request at a time, at a large supplier's size.

    .venv/bin/python bench/pages.py [--devices 20000] [--owned 2000] [--repeat 20] [--keep]

Set-up (timed apart, not measured): a fresh PostgreSQL database holding a 30-epoch season
(config/seasons/ignition-s2.toml) of `--devices` devices at a real fleet's density, one
supplier owning `--owned` of them and the others six to a supplier (bench/page_fleet.py),
the detector's proposed incident for the forced-upgrade drop, v1 published without it, v2
published with it confirmed, the incident proposed again, v3 (a draft) and the eligibility
view (bench/page_fleet.py's `tell_story`).

Then `rewards api` is started as its own process (two uvicorn workers, as in
bench/api_load.py) with the development issuer, and this process signs in as each role
through the real sign-in flow (page -> sign-in -> provider's form -> code -> callback, PKCE)
and asks for every GET route under /app that `rewards.web.app.PAGE_ROUTERS` lists, with its
parameters filled in: the large supplier's own device, the published and draft snapshots,
the proposed incident, page 2 of every paged list (the page's own "next" link) and a search.
Each page is asked `--repeat` times after two warm-ups, sequentially, over one kept-alive
connection per role (so one worker answers a role's requests); the report gives status,
body bytes, p50, p90 and max in ms, the first (unmeasured) request's ms, which pays for any
per-process cache the page keeps, and `GET /healthz` as the reference from the same run. A
route that could not be filled is reported as skipped with the reason. Target (issue 17):
every page under 300 ms (p90 here). Results: bench/out/pages.json. The database is dropped
at the end (--keep keeps it; --reuse measures a kept one again; --serve-only serves a kept
one for a profiler until Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from fastapi.routing import APIRoute  # noqa: E402
from page_fleet import BIG, Probe, load_page_fleet, probes, tell_story  # noqa: E402
from snapshot import ADMIN, POLICY, drop_database, fresh_database  # noqa: E402
from sqlalchemy import text  # noqa: E402

from rewards.db.engine import make_engine  # noqa: E402
from rewards.web.app import PAGE_ROUTERS  # noqa: E402

OUT = ROOT / "bench" / "out"
DATABASE = "rewards_bench_pages"
PORT = 8792
TARGET_MS = 300.0
SMALL = "owner-000000"  # a supplier of six devices, for comparison
SUBJECTS = {
    "supplier": BIG,
    "small-supplier": SMALL,
    "admin": "bench-admin",
    "finance": "bench-finance",
}
ROLE_OF = {"small-supplier": "supplier"}
HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')
NEXT = re.compile(r'<a rel="next"[^>]* href="([^"]+)"')


def prepare(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The database and what the pages need of it (made, or a kept one with --reuse)."""
    kept = OUT / "pages-setup.json"
    url = args.url.rsplit("/", 1)[0] + f"/{DATABASE}"
    if args.reuse:
        return url, json.loads(kept.read_text())
    print(f"set-up: {args.devices:,} devices, {args.owned:,} of them one supplier's ...")
    started = time.perf_counter()
    url = fresh_database(args.url, DATABASE)
    facts: dict[str, Any] = load_page_fleet(url, args.devices, args.owned)
    facts["fleet_s"] = round(time.perf_counter() - started, 1)
    print(f"  fleet: {facts['fleet_s']} s", flush=True)
    facts.update(tell_story(url))
    engine = make_engine(url)
    with engine.connect() as connection:
        facts["big_device"] = connection.execute(
            text(
                "SELECT device_id FROM device_metadata WHERE owner_id = :o AND valid_to IS NULL "
                'ORDER BY device_id COLLATE "C" LIMIT 1 OFFSET 150'
            ),
            {"o": BIG},
        ).scalar_one()
    engine.dispose()
    facts["setup_s"] = round(time.perf_counter() - started, 1)
    kept.write_text(json.dumps(facts, indent=2) + "\n")
    print(f"set-up done in {facts['setup_s']} s", flush=True)
    return url, facts


def serve(url: str, scratch: Path) -> subprocess.Popen[bytes]:
    """`rewards api` with two workers, as bench/api_load.py starts it, signing in through
    the development issuer; its own key, session secret and (empty) archive in `scratch`."""
    env = {
        **os.environ,
        "REWARDS_DATABASE_URL": url,
        "REWARDS_SEASON": POLICY.season_id,
        "REWARDS_DEV_ISSUER_ENABLED": "true",
        "REWARDS_DEV_ISSUER_KEY_FILE": str(scratch / "dev.pem"),
        "REWARDS_SESSION_SECRET_FILE": str(scratch / "session-secret"),
        "REWARDS_ARCHIVE_URL": str(scratch / "archive"),
        # one client asks for everything here: no limit should answer instead of a page
        "REWARDS_RATE_LIMIT_PER_IP": "1000000/minute",
        "REWARDS_RATE_LIMIT_PER_SUBJECT": "1000000/minute",
    }
    log = (OUT / "pages-server.log").open("wb")
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
    raise SystemExit("the site did not become ready; see bench/out/pages-server.log")


def client() -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{PORT}", follow_redirects=False, timeout=120)


def sign_in(subject: str, role: str) -> tuple[httpx.Client, float]:
    """A browser-like client signed in as `subject` with `role` through the whole flow
    (tests/web/conftest.py's `sign_in`), and the seconds the callback took."""
    browser = client()
    to_sign_in = browser.get("/app")
    to_provider = browser.get(to_sign_in.headers["location"])
    form = browser.get(to_provider.headers["location"])
    fields = {name: unescape(value) for name, value in HIDDEN.findall(form.text)}
    back = browser.post(
        "/dev-issuer/authorize", data={**fields, "subject": subject, "roles": [role]}
    )
    began = time.perf_counter()
    done = browser.get(back.headers["location"])
    took = time.perf_counter() - began
    if done.status_code != 303 or done.headers.get("location") != "/app":
        raise SystemExit(f"sign-in as {subject} ({role}) failed: {done.status_code} {done.text}")
    return browser, took


@dataclass
class Timed:
    probe: Probe
    status: int
    bytes: int
    ms: list[float] = field(default_factory=list)
    first_ms: float = float("nan")  # the first request: it fills any cache the page has
    error: str = ""

    def row(self) -> dict[str, Any]:
        figures = latencies(self.ms, self.first_ms)
        return {
            "route": self.probe.route,
            "path": self.probe.path,
            "role": self.probe.role,
            "note": self.probe.note,
            "status": self.status,
            "bytes": self.bytes,
            **figures,
            "over_target": figures["over_target"] or bool(self.error),
            **({"error": self.error} if self.error else {}),
        }


def latencies(measured: list[float], first: float) -> dict[str, Any]:
    """p50, p90 and max of `measured` ms, the first request's, and whether p90 misses the
    target."""
    ms = np.array(measured or [float("nan")])
    p90 = float(np.percentile(ms, 90))
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p90_ms": round(p90, 1),
        "max_ms": round(float(ms.max()), 1),
        "first_ms": round(first, 1),
        "over_target": p90 > TARGET_MS,
    }


def time_probe(browser: httpx.Client, probe: Probe, repeat: int, warm: int) -> Timed:
    """`warm` unmeasured requests, then `repeat` measured ones (until the body is read)."""
    timed = Timed(probe, 0, 0)
    for i in range(warm + repeat):
        if probe.fresh:
            browser.cookies.clear()
        began = time.perf_counter()
        answer = browser.get(probe.path)
        took = (time.perf_counter() - began) * 1000
        timed.status, timed.bytes = answer.status_code, len(answer.content)
        if answer.status_code != probe.expect:  # reported, not timed
            timed.error = f"expected {probe.expect}: {answer.text[-300:]}"
            print(f"{probe.path} as {probe.role}: {answer.status_code}, {timed.error}")
            return timed
        if i == 0:
            timed.first_ms = took
        if i >= warm:
            timed.ms.append(took)
    return timed


def next_pages(browser: httpx.Client, probe: Probe) -> list[Probe]:
    """Page 2 of each paged list on `probe`'s page: its own rel="next" links."""
    html = browser.get(probe.path).text
    found = [unescape(link) for link in NEXT.findall(html)]
    base = probe.path.split("?")[0]
    return [
        Probe(
            base + link if link.startswith("?") else link,
            probe.role,
            note=f"page 2 ({'grid' if 'grid=' in link else 'list'})",
            route=probe.route,
        )
        for link in found
    ]


def show(row: dict[str, Any]) -> None:
    print(f"{row['p90_ms']:>9.1f} ms p90  {row['role']:<14} {row['path']}", flush=True)


def measure(facts: dict[str, Any], repeat: int, warm: int) -> dict[str, Any]:
    clients: dict[str, httpx.Client] = {"anonymous": client()}
    callbacks: list[float] = []
    for name, subject in SUBJECTS.items():
        clients[name], _ = sign_in(subject, ROLE_OF.get(name, name))
    for _ in range(warm + repeat):  # the callback, a fresh sign-in each time
        signed, took = sign_in(BIG, "supplier")
        signed.close()
        callbacks.append(took * 1000)
    filled = probes(facts)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    routes = [
        route.path
        for router in PAGE_ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and "GET" in route.methods
    ]
    reference = time_probe(
        clients["anonymous"], Probe("/healthz", "anonymous", route="reference"), repeat, warm
    ).row()
    show(reference)
    for route in routes:
        if route == "/app/auth/callback":
            rows.append(
                {"route": route, "path": "/app/auth/callback?code=...&state=...",
                 "role": "supplier", "note": "a fresh sign-in each time", "status": 303,
                 "bytes": 0, **latencies(callbacks[warm:], callbacks[0])}
            )  # fmt: skip
            show(rows[-1])
            continue
        fill = filled.get(route, "no filler: a route added since this benchmark was written")
        if isinstance(fill, str):
            skipped.append({"route": route, "reason": fill})
            continue
        for probe in fill:
            todo = [probe]
            if probe.paged:
                more = next_pages(clients[probe.role], probe)
                if not more:
                    reason = f"page 2 of {probe.path}: no next link (everything fits page 1)"
                    skipped.append({"route": route, "reason": reason})
                todo += more
            for each in todo:
                rows.append(time_probe(clients[each.role], each, repeat, warm).row())
                show(rows[-1])
    for browser in clients.values():
        browser.close()
    return {"reference_healthz": reference, "pages": rows, "skipped": skipped}


def table(result: dict[str, Any]) -> str:
    head = (
        f"{'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} {'first':>8} {'bytes':>11} {'st':>3}  "
        f"{'role':<14} page"
    )
    lines = [head, "-" * len(head)]
    for row in [result["reference_healthz"], *result["pages"]]:
        mark = "  <-- over 300 ms p90" if row["over_target"] else ""
        mark = f"  <-- answered {row['status']}, not timed" if "error" in row else mark
        note = f"  ({row['note']})" if row["note"] else ""
        lines.append(
            f"{row['p50_ms']:>8.1f} {row['p90_ms']:>8.1f} {row['max_ms']:>8.1f} "
            f"{row['first_ms']:>8.1f} {row['bytes']:>11,} {row['status']:>3}  {row['role']:<14} "
            f"{row['path']}{note}{mark}"
        )
    lines += [f"skipped: {s['route']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines)


def code_version() -> dict[str, object]:
    """The commit measured and the files changed from it (the pages are served from the
    work tree as it is)."""

    def git(*words: str) -> str:
        return subprocess.run(
            ["git", *words], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "changed": git("status", "--short").splitlines()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--owned", type=int, default=2_000, help="the large supplier's devices")
    parser.add_argument("--repeat", type=int, default=20, help="measured requests a page")
    parser.add_argument("--warm", type=int, default=2, help="unmeasured requests first")
    parser.add_argument("--url", default=ADMIN, help="PostgreSQL admin URL (database test)")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--reuse", action="store_true", help="measure a kept database again")
    parser.add_argument("--serve-only", action="store_true", help="serve a kept one, no timing")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        url, facts = prepare(args)
        server = serve(url, Path(tempfile.mkdtemp(prefix="bench-pages-")))
        print(f"site: http://127.0.0.1:{PORT} (pid {server.pid})", flush=True)
        try:
            if args.serve_only:  # for a profiler: py-spy dump --pid <a worker's pid>
                server.wait()
                return
            load_before = os.getloadavg()
            result = measure(facts, args.repeat, args.warm)
            result["load_average_1_5_15"] = {"before": load_before, "after": os.getloadavg()}
        finally:
            server.terminate()
            server.wait(30)
    finally:
        if not args.keep and not args.reuse:
            drop_database(args.url, DATABASE)
    over = [row["path"] for row in result["pages"] if row["over_target"]]
    report = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "code": code_version(),
        **facts,
        "repeat": args.repeat,
        "warm_ups": args.warm,
        "target": "every page p90 < 300 ms",
        **result,
        "over_target": over,
    }
    (OUT / "pages.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(result))
    print(f"over {TARGET_MS:.0f} ms p90: {len(over)} of {len(result['pages'])} pages")


if __name__ == "__main__":
    main()
