"""The pages in a real browser: headless Chromium (Debian's package) driven by Playwright,
on the april-2024 fleet. Each role signs in through the development issuer's form, checks
what its pages show, and acts through them; every page is saved as a screenshot under
test-artifacts/screenshots/.

Without Chromium these tests are skipped with a message, except in CI (CI=true), where
.ci/setup installs it and its absence is a failure.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from rewards.services.incidents import list_incidents
from rewards.settings import REPO_ROOT
from tests.web.conftest import Site, prepared_copy, serve_site

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError("Chromium is missing in CI: .ci/setup installs Debian's chromium")
    pytest.skip(
        "browser tests skipped: Debian's chromium is not installed (.ci/setup installs it)",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(databases, seeded, small_fleet, tmp_path_factory) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    engine, proposed = prepared_copy(databases, seeded, "sqlite", small_fleet)
    yield from serve_site(engine, tmp_path_factory.mktemp("browser"), proposed)
    engine.dispose()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


PHONE = {"width": 390, "height": 844}


def signed_in(
    browser: Browser,
    site: Site,
    subject: str,
    role: str,
    viewport: dict[str, int] | None = None,
    bypass_csp: bool = False,
) -> Page:
    context = browser.new_context(
        base_url=site.url,
        viewport=viewport or {"width": 1280, "height": 800},
        bypass_csp=bypass_csp,
    )
    page = context.new_page()
    page.goto("/app")
    expect(page.locator("h1")).to_have_text("Development sign-in")
    page.fill("#subject", subject)
    page.check(f"input[name=roles][value={role}]")
    shot(page, f"sign-in-{role}")
    page.click("button[type=submit]")
    expect(page.locator(".who")).to_have_text(subject)
    shot(page, f"home-{role}")
    return page


def test_a_supplier_sees_grid_timeline_and_checks_their_proof(browser: Browser, site: Site) -> None:
    owner, other = site.owners[0], site.owners[1]
    page = signed_in(browser, site, owner, "supplier")
    page.goto("/app/supplier")
    owned = page.locator("table[data-table=owned] tbody tr")
    assert sorted(owned.evaluate_all("rows => rows.map(r => r.dataset.device)")) == (
        site.devices_of(owner)
    )
    with site.engine.connect() as connection:
        view_rows = connection.execute(
            text("SELECT rows FROM eligibility_documents WHERE owner_id = :o"), {"o": owner}
        ).scalar_one()
    assert page.locator("td.cell[data-state]:not([data-state=''])").count() == view_rows
    shot(page, "supplier-devices")

    device = site.devices_of(owner)[0]
    page.click(f"table[data-table=owned] a:text-is('{device}')")
    expect(page.locator("h1")).to_have_text(f"Device {device}")
    assert page.locator("section.epoch svg.bar").count() == page.locator("section.epoch").count()
    assert page.locator("section.epoch .explanation").first.inner_text().strip()
    shot(page, "supplier-device")

    answer = page.goto(f"/app/supplier/devices/{site.devices_of(other)[0]}")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    shot(page, "supplier-refused-another-device")

    page.goto("/app/supplier/rewards")
    page.click("button.verify")
    expect(page.locator("output.verdict")).to_have_attribute("data-verified", "yes")
    expect(page.locator("output.verdict")).to_contain_text("Verified")
    shot(page, "supplier-rewards")
    page.evaluate("""() => {  // someone else's id with this leaf: the commitment fails
      const source = document.querySelector("script.proof-data");
      const data = JSON.parse(source.textContent);
      data.owner_id = data.owner_id + "-not-me";
      source.textContent = JSON.stringify(data);
    }""")
    page.click("button.verify")
    expect(page.locator("output.verdict")).to_have_attribute("data-verified", "no")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto("/app/supplier")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "supplier-devices-phone")
    page.close()


def test_an_admin_sees_the_drop_under_the_incident_then_confirms_reruns_and_publishes(
    browser: Browser, site: Site
) -> None:
    page = signed_in(browser, site, "admin.example.org", "admin")
    page.goto("/app/admin")
    drawn = page.locator(f"svg[data-chart=fleet] g.incident[data-incident='{site.proposed}']")
    expect(drawn).to_have_attribute("data-status", "proposed")
    (incident,) = [i for i in list_incidents(site.engine) if i.id == site.proposed]
    assert drawn.get_attribute("data-start") == incident.start.strftime("%Y-%m-%dT%H:%M:%SZ")
    # the fleet's lowest point (the collapse at the forced upgrade) lies inside the window
    points = page.locator("svg[data-chart=fleet] polyline").get_attribute("points") or ""
    xy = [tuple(map(float, p.split(","))) for p in points.split()]
    busy = [p for p in xy if p[0] > xy[0][0] + 5]  # past the season's first instant
    lowest_x = max(busy, key=lambda p: p[1])[0]
    left = float(drawn.get_attribute("data-x") or 0)
    assert left <= lowest_x <= left + float(drawn.get_attribute("data-width") or 0)
    shot(page, "admin-fleet-proposed")

    page.goto(f"/app/admin/incidents/{site.proposed}/edit")
    expect(page.locator("#deadline")).to_have_value("48")
    shot(page, "admin-incident-edit")

    page.goto("/app/admin")
    page.click(f"tr[data-incident='{site.proposed}'] a[data-action=preview-confirm]")
    regained = page.locator("[data-fact=regained]").inner_text()
    assert int(regained.replace(",", "")) > 0  # the preview, before anything changes
    expect(page.locator("table[data-table=per-day] tbody tr").first).to_be_visible()
    shot(page, "admin-incident-impact")
    confirm = page.locator(f"button:text-is('Confirm {site.proposed}')")
    confirm.focus()
    page.keyboard.press("Enter")  # forms work from the keyboard
    expect(page.locator("[data-said]")).to_contain_text(f"Incident {site.proposed} confirmed")
    expect(
        page.locator(f"ul[data-list=confirmed] li[data-incident='{site.proposed}']")
    ).to_be_visible()
    expect(drawn).to_have_attribute("data-status", "confirmed")
    shot(page, "admin-fleet-confirmed")

    page.goto("/app/admin/snapshots")
    page.fill("#reason", "forced-upgrade incident confirmed")
    page.click("button:text-is('Run a draft snapshot')")
    done = page.locator("[data-said^='ran:']")
    expect(done).to_contain_text("device-epochs differ from")
    made = (done.get_attribute("data-said") or "").split(":", 1)[1]
    shot(page, "admin-snapshots-rerun")

    page.click("button:text-is('Compare')")
    changed = page.locator("[data-fact=devices_changed]").inner_text()
    assert int(changed.replace(",", "")) > 0
    shot(page, "admin-diff")

    page.goto("/app/admin/snapshots")
    page.click(f"tr[data-snapshot='{made}'] a:text-is('Publish…')")
    expect(page.locator("h1")).to_have_text(f"Publish {made}?")
    shot(page, "admin-publish-confirm")
    page.fill("#confirm", made)
    page.click(f"button:text-is('Publish {made}')")
    expect(page.locator(f"tr[data-snapshot='{made}']")).to_have_attribute(
        "data-status", "published"
    )
    shot(page, "admin-snapshots-published")

    page.goto("/app/admin/alerts")
    expect(page.locator("table[data-table=runs]")).to_be_visible()
    shot(page, "admin-alerts-and-runs")
    page.close()


def test_finance_sees_published_totals_and_downloads_the_export(
    browser: Browser, site: Site, tmp_path: Path
) -> None:
    page = signed_in(browser, site, "finance.example.org", "finance")
    page.goto("/app/finance")
    with site.engine.connect() as connection:
        published = connection.execute(
            text("SELECT version, total_paid FROM snapshots WHERE status <> 'draft'")
        ).all()
    rows = page.locator("table[data-table=published] tbody tr")
    assert rows.count() == len(published)
    totals = {int(t) for t in rows.locator("td[data-total]").evaluate_all(
        "cells => cells.map(c => c.dataset.total)")}  # fmt: skip
    assert totals == {t for _, t in published}
    shot(page, "finance-snapshots")
    with page.expect_download() as download:
        page.locator("a:text-is('manifest.json')").first.click()
    saved = tmp_path / "manifest.json"
    download.value.save_as(saved)
    manifest = json.loads(saved.read_text())
    assert manifest["totals"]["paid"] in totals
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["merkle_root"])
    page.click("button:text-is('Sign out')")
    expect(page.locator("h1")).to_have_text("Signed out")
    shot(page, "signed-out")
    page.goto("/app/finance")  # the session is gone: back to the provider's form
    expect(page.locator("h1")).to_have_text("Development sign-in")
    page.close()


@pytest.fixture(scope="module")
def open_site(databases, seeded, small_fleet, tmp_path_factory) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    """The pages with public_url unset, on a random port, as `rewards api` serves them."""
    engine, proposed = prepared_copy(databases, seeded, "sqlite", small_fleet)
    yield from serve_site(engine, tmp_path_factory.mktemp("open"), proposed, public_url="")
    engine.dispose()


def test_without_public_url_the_pages_work_at_localhost_on_any_port(
    browser: Browser, open_site: Site
) -> None:
    """Issue 17: on another port every form failed and `localhost` could not sign in."""
    site = dataclasses.replace(open_site, url=open_site.url.replace("127.0.0.1", "localhost"))
    page = signed_in(browser, site, site.owners[0], "supplier")
    assert page.url.startswith(site.url)  # sign-in came back to the address it began at
    page.goto("/app/supplier/rewards")
    expect(page.locator("h1")).to_be_visible()
    shot(page, "localhost-supplier-rewards")
    page.click("button:text-is('Sign out')")  # a form: its origin is this address
    expect(page.locator("h1")).to_have_text("Signed out")
    page.close()


PHONE_PAGES = {
    "admin": [
        "/app/admin",
        "/app/admin/snapshots",
        "/app/admin/devices/{device}",
        "/app/admin/audit",
        "/app/admin/metadata",
        "/app/admin/incidents/new",
        "/app/admin/alerts",
    ],
    "supplier": ["/app/supplier", "/app/supplier/devices/{device}", "/app/supplier/rewards"],
    "finance": ["/app/finance", "/app/finance/snapshots/v1"],
}


def _phone_problems(page: Page) -> list[str]:
    """What a phone would hide: the page wider than the screen, a table's first (key)
    column out of view once the table is scrolled to its far end, a chart label under
    9 px, a button off the screen."""
    return list(
        page.evaluate("""() => {
      const width = window.innerWidth, found = [];
      if (document.documentElement.scrollWidth > width + 1) found.push("page wider than screen");
      for (const region of document.querySelectorAll(".scroll")) {
        region.scrollLeft = region.scrollWidth;
        for (const cell of region.querySelectorAll("tr > :first-child")) {
          const box = cell.getBoundingClientRect();
          if (box.width && (box.left < -1 || box.right > width + 1))
            found.push("key column hidden: " + cell.textContent.trim().slice(0, 30));
        }
        region.scrollLeft = 0;
      }
      for (const label of document.querySelectorAll("svg text")) {
        const box = label.getBoundingClientRect();
        if (box.height && box.height < 9) found.push("label " + box.height.toFixed(1) + " px");
      }
      for (const button of document.querySelectorAll("main button")) {
        const box = button.getBoundingClientRect();
        if (box.width && (box.left < 0 || box.right > width + 1) && !button.closest(".scroll"))
          found.push("button off screen: " + button.textContent.trim());
      }
      return [...new Set(found)];
    }""")
    )


def test_on_a_phone_no_key_column_button_or_label_is_out_of_reach(
    browser: Browser, site: Site
) -> None:
    """Issue 17, item 8: at 390 px the key columns stay in view while tables scroll (and
    say they scroll), buttons fit, and chart labels stay readable."""
    owner = max(site.owners, key=lambda o: len(site.devices_of(o)))
    who = {"admin": "admin.example.org", "supplier": owner, "finance": "finance.example.org"}
    for role, paths in PHONE_PAGES.items():
        page = signed_in(browser, site, who[role], role, viewport=PHONE)
        for path in paths:
            page.goto(path.format(device=site.devices_of(owner)[0]))
            expect(page.locator("h1")).to_be_visible()
            assert _phone_problems(page) == [], path
            name = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")
            shot(page, f"phone-{name}")
        if role == "supplier":
            page.goto("/app/supplier")
            hint = page.locator("div.scroll.overflowing").first
            expect(hint).to_be_visible()  # the grid is wider than a phone, and says so
            assert "Scroll sideways" in page.evaluate(
                "e => getComputedStyle(e, '::before').content", hint.element_handle()
            )
        page.close()


AXE = REPO_ROOT / ".venv" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
EVERY_PAGE = {
    **PHONE_PAGES,
    "admin": [
        *PHONE_PAGES["admin"],
        "/app/admin/incidents/{incident}/impact?change=confirm",
        "/app/admin/incidents/{incident}/edit",
        "/app/admin/snapshots/diff?before=v1&after=v1",
    ],
    "finance": [*PHONE_PAGES["finance"], "/app/finance/adjustments?paid=v1&due=v1"],
}


def _axe_violations(page: Page) -> list[str]:
    """axe-core's serious and critical WCAG 2 A/AA violations on the page."""
    page.evaluate(AXE.read_text())
    found = page.evaluate("""async () => {
      const only = {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa"]}};
      const result = await axe.run(document, only);
      return result.violations.filter(v => v.impact === "serious" || v.impact === "critical")
        .map(v => `${v.id}: ${v.help} (${v.nodes.length}, e.g. ${v.nodes[0].target})`);
    }""")
    return list(found)


def test_axe_finds_no_serious_accessibility_violation_on_any_page(
    browser: Browser, site: Site
) -> None:
    """Issue 17: contrast and the rest of WCAG 2 AA, by axe-core, desktop and phone; a
    screenshot of every page in both (test-artifacts/screenshots/)."""
    if not AXE.exists():
        if os.environ.get("CI") == "true":
            raise RuntimeError("axe-core is missing in CI: .ci/setup installs it from npm")
        pytest.skip("axe-core is not installed (.ci/setup installs it from npm)")
    owner = max(site.owners, key=lambda o: len(site.devices_of(o)))
    who = {"admin": "admin.example.org", "supplier": owner, "finance": "finance.example.org"}
    for viewport in (None, PHONE):
        for role, paths in EVERY_PAGE.items():
            page = signed_in(browser, site, who[role], role, viewport=viewport, bypass_csp=True)
            for path in paths:
                address = path.format(device=site.devices_of(owner)[0], incident=site.proposed)
                answer = page.goto(address)
                assert answer is not None and answer.status < 500, address
                assert _axe_violations(page) == [], (address, viewport)
                name = re.sub(r"[^a-z0-9]+", "-", address.lower()).strip("-")
                shot(page, f"{'phone' if viewport else 'desktop'}-{role}-{name}")
            page.close()
