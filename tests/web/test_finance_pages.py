"""Finance's pages (issue 17, item 7): amounts in tokens, who published each version, its
totals per epoch adding up to what it paid, and the adjustments between two versions
previewed with the same figures as the CSV they download."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from decimal import Decimal

import httpx
import polars as pl
import pytest

from rewards.services.incidents import decide
from rewards.services.publication import publish
from rewards.services.snapshot_runs import run_snapshot
from rewards.services.snapshots import list_snapshots, settlement, stored_epochs
from rewards.web.templates import as_tokens
from tests.seeded import KEY, LOCK, NOW, POLICY
from tests.web.conftest import EVERY_EPOCH, Site, sign_in

UNITS = re.compile(r'data-fact="([a-z]+)" data-units="(-?\d+)"')


@pytest.fixture(scope="module")
def finance(site: Site) -> Iterator[httpx.Client]:
    """Signed in as finance, with v2 (the incident confirmed) published over v1."""
    decide(site.engine, site.proposed, status="confirmed", by="admin.test", now=NOW)
    made = run_snapshot(
        site.engine, POLICY, epochs=EVERY_EPOCH, trigger="manual", triggered_by="admin.test",
        reason="incident confirmed", clock=lambda: NOW, key=KEY, lock_ttl=LOCK,
    ).snapshot  # fmt: skip
    publish(site.engine, made, by="cfo.example.org", clock=lambda: NOW, lock_ttl=LOCK)
    client = sign_in(site, "finance.example.org", "finance")
    yield client
    client.close()


def test_each_version_says_who_published_it_and_adds_up_per_epoch(
    site: Site, finance: httpx.Client
) -> None:
    page = finance.get("/app/finance").text
    newest = list_snapshots(site.engine, POLICY.season_id)[0]
    assert "cfo.example.org" in page
    assert as_tokens(newest.total_paid, POLICY.token_decimals) in page
    one = finance.get(f"/app/finance/snapshots/v{newest.version}").text
    assert "by cfo.example.org" in one
    paid = [int(p) for p in re.findall(r'<tr data-epoch="\d+" data-paid="(\d+)">', one)]
    expected = stored_epochs(site.engine, newest)
    assert paid == expected["paid"].to_list() and sum(paid) == newest.total_paid
    days = re.findall(r'<th scope="row">(\d{4}-\d\d-\d\d)</th>', one)
    assert days[0] == f"{POLICY.start:%Y-%m-%d}" and len(days) == expected.height


def test_the_adjustments_preview_agrees_with_the_csv(site: Site, finance: httpx.Client) -> None:
    page = finance.get("/app/finance/adjustments", params={"paid": "v1", "due": "v2"})
    assert page.status_code == 200
    facts = {k: int(v) for k, v in UNITS.findall(page.text)}
    table = settlement(site.engine, "v1", "v2", POLICY.season_id)
    assert facts["owed"] == table.filter(table["adjustment"] > 0)["adjustment"].sum() > 0
    assert facts["overpaid"] == table.filter(table["adjustment"] < 0)["adjustment"].sum()
    shown = re.findall(r'<tr data-owner="([^"]+)">', page.text)
    largest = table.sort([pl.col("adjustment").abs(), "owner_id"], descending=[True, False])
    assert shown == largest["owner_id"].head(100).to_list()
    download = finance.get("/app/finance/adjustments.csv", params={"paid": "v1", "due": "v2"})
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert sum(int(r["adjustment"]) for r in rows if int(r["adjustment"]) > 0) == facts["owed"]
    assert all(
        Decimal(r["adjustment_decimal"]) == Decimal(r["adjustment"]).scaleb(-POLICY.token_decimals)
        for r in rows
    )
    same = finance.get("/app/finance/adjustments", params={"paid": "v2", "due": "v2"})
    assert same.status_code == 422 and "nothing to settle" in same.text
    draft = finance.get("/app/finance/snapshots/v99")
    assert draft.status_code == 404
