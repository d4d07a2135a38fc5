"""The pages in Chromium at a real supplier's size (issue 17, "Done when"): a fleet of
20,000 devices over a 30-day season at a real fleet's density, one supplier owning 2,000
of them (bench/page_fleet.py builds it straight into PostgreSQL), served on a random port.
The big supplier pages and searches its devices and is paid what its device-epochs add up
to; an admin previews the proposed incident, declares another, reverts a metadata change
and finds both in the audit log; at 390 px nothing key is out of reach."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sqlalchemy import Engine

from rewards.db.devices import store_devices
from rewards.db.engine import make_engine, unit_of_work
from rewards.services.snapshots import resolve, stored_rows
from rewards.settings import REPO_ROOT
from tests.web.conftest import Site, serve_site
from tests.web.test_browser import (  # skips this module too where Chromium is missing
    ARGS,
    CHROMIUM,
    PHONE,
    _phone_problems,
    shot,
    signed_in,
)

sys.path.insert(0, str(REPO_ROOT / "bench"))
import page_fleet
from playwright.sync_api import Browser, expect, sync_playwright

pytestmark = pytest.mark.xdist_group("big-fleet")
DEVICES, OWNED = 20_000, 2_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")  # once: xdist may interleave this module with others
def big(databases, tmp_path_factory) -> Iterator[tuple[Site, dict[str, object]]]:  # type: ignore[no-untyped-def]
    url = databases.fresh("postgresql")
    page_fleet.load_page_fleet(url, DEVICES, OWNED)
    facts = page_fleet.tell_story(url, draft=False, settle=False)
    engine = make_engine(url)
    for site in serve_site(engine, tmp_path_factory.mktemp("big"), str(facts["incident"])):
        yield site, facts
    engine.dispose()


def _mine(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(
            r[0]
            for r in connection.exec_driver_sql(
                "SELECT device_id FROM device_metadata WHERE owner_id = %s AND valid_to IS NULL",
                (page_fleet.BIG,),
            )
        )


def test_the_big_supplier_pages_searches_and_is_paid_what_its_device_epochs_add_up_to(
    browser: Browser, big: tuple[Site, dict[str, object]]
) -> None:
    site, facts = big
    assert not site.url.endswith(":8700")  # a random port, public_url as the site says
    mine = _mine(site.engine)
    assert len(mine) == OWNED
    page = signed_in(browser, site, page_fleet.BIG, "supplier")
    page.goto("/app/supplier")
    count = page.locator("p.count[data-total]").first
    expect(count).to_have_attribute("data-total", str(OWNED))
    expect(count).to_contain_text(f"100 of {OWNED:,}")
    first = page.locator("table[data-table=owned] tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.device)"
    )
    assert first == mine[:100]
    page.click("nav[aria-label='Devices pages'] a[rel=next]")
    second = page.locator("table[data-table=owned] tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.device)"
    )
    assert second == mine[100:200]
    part = mine[1234][-5:]
    page.fill("#q", part)
    page.click("form.search button[type=submit]")
    found = page.locator("table[data-table=owned] tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.device)"
    )
    assert found == [d for d in mine if part in d][:100] and mine[1234] in found
    shot(page, "big-supplier-search")

    published = resolve(site.engine, str(facts["published"]), "ignition-s2")
    rows = stored_rows(site.engine, published).filter(pl.col("owner_id") == page_fleet.BIG)
    page.goto("/app/supplier")
    paid = page.locator("[data-reward]").get_attribute("data-reward")
    assert paid is not None and int(paid) == int(rows["reward"].sum()) > 0
    device = mine[1500]
    page.goto(f"/app/supplier/devices/{device}")
    shown = page.locator(".published-outcome").evaluate_all(
        "ps => ps.map(p => p.dataset.publishedEligible)"
    )
    mine_rows = rows.filter(pl.col("device_id") == device).sort("epoch")
    assert shown == ["yes" if e else "no" for e in mine_rows["eligible"]]
    shot(page, "big-supplier-device")
    page.close()


def test_an_admin_previews_declares_and_reverts_at_fleet_size(
    browser: Browser, big: tuple[Site, dict[str, object]]
) -> None:
    site, facts = big
    page = signed_in(browser, site, "admin.example.org", "admin")
    page.goto(f"/app/admin/incidents/{facts['incident']}/impact?change=confirm")
    regained = int(page.locator("[data-fact=regained]").inner_text().replace(",", ""))
    assert regained > 1_000  # the forced upgrade, at a fleet's size
    changed = page.locator("p[data-total]").first.get_attribute("data-total")
    assert changed is not None and int(changed) >= regained
    shot(page, "big-admin-impact")

    mine = _mine(site.engine)
    page.goto("/app/admin/incidents/new")
    page.fill("#incident_id", "rack-12-power")
    page.fill("#start", "2024-05-10T10:00")
    page.fill("#end", "2024-05-10T11:30")
    page.fill("#deadline", "4")
    page.check("input[name=scope_kind][value=devices]")
    page.fill("#scope_devices", "\n".join(mine[:3]))
    page.fill("#reason", "rack 12 lost power")
    page.click("button:text-is('Declare')")
    expect(page.locator("[data-said]")).to_contain_text("rack-12-power declared")

    when = datetime(2024, 5, 12, 9, tzinfo=UTC)
    with unit_of_work(site.engine) as session:  # a worker rewrites an owner by mistake
        store_devices(
            session,
            [{"device_id": mine[7], "owner_id": "owner-thief", "gpu_model": "H100",
              "gpu_count": 1, "status": "active", "updated_at": when, "registered_at": when}],
            now=when, actor="worker-api:svc-9", source="test",
        )  # fmt: skip
    since = (when - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    until = (when + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    page.goto(f"/app/admin/metadata?actor=worker-api:svc-9&since={since}&until={until}")
    expect(page.locator("table[data-table=metadata] tbody tr")).to_have_count(1)
    page.fill("#reason", "owner rewritten by mistake")
    page.click("button:text-is('Revert these changes')")
    expect(page.locator("[data-said]")).to_contain_text("Reverted 1 metadata change")
    page.goto(f"/app/admin/devices/{mine[7]}")
    expect(page.locator("[data-fact=owner]")).to_have_text(page_fleet.BIG)

    page.goto("/app/admin/audit?actor=admin.example.org")
    actions = page.locator("table[data-table=audit] tbody tr td:nth-child(4)").all_inner_texts()
    assert actions[:2] == ["device.metadata.reverted", "incident.declare"]
    shot(page, "big-admin-audit")
    page.close()


def test_on_a_phone_the_big_pages_keep_their_key_columns(
    browser: Browser, big: tuple[Site, dict[str, object]]
) -> None:
    site, facts = big
    device = _mine(site.engine)[0]
    for role, subject, paths in (
        ("supplier", page_fleet.BIG, ["/app/supplier", f"/app/supplier/devices/{device}"]),
        ("admin", "admin.example.org", [
            "/app/admin", f"/app/admin/incidents/{facts['incident']}/impact?change=confirm",
            f"/app/admin/devices/{device}",
        ]),
    ):  # fmt: skip
        page = signed_in(browser, site, subject, role, viewport=PHONE)
        for path in paths:
            page.goto(path)
            assert _phone_problems(page) == [], path
            shot(page, "big-phone-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-"))
        page.close()
