"""What a supplier reads agrees with what they are paid (issue 17, item 1): the payout
comes from the published snapshot, named with when it was published; the season-so-far
view is labelled provisional, says who rebuilds it, and where it differs from the
published snapshot the device page says which one pays."""

from __future__ import annotations

import re
from collections.abc import Iterator

import orjson
import polars as pl
import pytest
from sqlalchemy import Engine

from rewards.services.eligibility_view import refresh_view, supplier_standing
from rewards.services.incidents import decide
from rewards.services.publication import publish
from rewards.services.snapshot_runs import run_snapshot
from rewards.services.snapshots import (
    list_snapshots,
    published_standing,
    stored_rows,
    stored_suppliers,
)
from rewards.web.templates import tokens
from tests.seeded import KEY, LOCK, NOW, POLICY
from tests.web.conftest import Site, prepared, prepared_copy, serve_site, sign_in


@pytest.fixture(scope="module")
def changed(databases, seeded, small_fleet, tmp_path_factory) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    """v1 published without the incident; then the incident confirmed and the view
    rebuilt: the season-so-far view credits what the published v1 does not pay."""
    engine, proposed = prepared_copy(databases, seeded, "sqlite", small_fleet)
    decide(engine, proposed, status="confirmed", by="admin.example.org", now=NOW)
    refresh_view(engine, POLICY, trigger="test", clock=lambda: NOW, lock_ttl=LOCK, force=True)
    yield from serve_site(engine, tmp_path_factory.mktemp("changed"), proposed)
    engine.dispose()


def _credited_but_unpaid(engine: Engine, owners: list[str]) -> tuple[str, str, int]:
    """An owner's device-epoch the view now calls eligible and the published v1 did not pay."""
    (published,) = [s for s in list_snapshots(engine, POLICY.season_id) if s.status == "published"]
    paid = {
        (r["device_id"], r["epoch"])
        for r in stored_rows(engine, published).filter("eligible").iter_rows(named=True)
    }
    for owner in owners:
        standing = supplier_standing(engine, POLICY.season_id, owner, limit=10**9)
        assert standing is not None
        for row in orjson.loads(standing.document):
            if row["eligible"] and (row["device_id"], row["epoch"]) not in paid:
                return owner, row["device_id"], row["epoch"]
    raise AssertionError("the confirmed incident should credit some device-epoch v1 did not pay")


def test_the_device_page_says_the_published_snapshot_pays_where_the_view_differs(
    changed: Site,
) -> None:
    owner, device, epoch = _credited_but_unpaid(changed.engine, changed.owners)
    client = sign_in(changed, owner, "supplier")
    html = client.get(f"/app/supplier/devices/{device}").text
    section = re.search(rf'<section class="epoch" data-epoch="{epoch}".*?</section>', html, re.S)
    assert section is not None
    outcome = re.search(r'<p class="published-outcome"([^>]*)>(.*?)</p>', section.group(0), re.S)
    assert outcome is not None
    assert 'data-published-eligible="no"' in outcome.group(1)
    assert 'data-differs="yes"' in outcome.group(1)
    assert "Published in ignition-s2-v1" in outcome.group(2) and "not paid" in outcome.group(2)
    assert "provisional" in html
    # epochs where both agree say so without the warning
    agreeing = re.findall(r'data-differs="no"', html)
    assert agreeing


def test_the_devices_page_shows_the_published_payout_and_labels_the_view(changed: Site) -> None:
    owner = changed.owners[0]
    html = sign_in(changed, owner, "supplier").get("/app/supplier").text
    (published,) = [
        s for s in list_snapshots(changed.engine, POLICY.season_id) if s.status == "published"
    ]
    suppliers = stored_suppliers(changed.engine, published)
    reward = suppliers.filter(owner_id=owner).get_column("reward").item()
    assert 'data-published="ignition-s2-v1"' in html
    assert f'data-reward="{reward}"' in html
    assert "provisional" in html and "rewards eligibility refresh" in html
    assert "refreshed every few minutes" not in html


@pytest.mark.parametrize("part_rows", [17, 1_000_000])  # a device's rows across parts, or one
def test_the_published_standing_is_the_stored_rows_of_that_device_and_owner(
    ingested: Engine, monkeypatch: pytest.MonkeyPatch, part_rows: int
) -> None:
    monkeypatch.setattr("rewards.db.snapshots.PART_ROWS", part_rows)
    assert published_standing(ingested, POLICY.season_id, "anyone") is None  # none published
    prepared(ingested)
    (published,) = [
        s for s in list_snapshots(ingested, POLICY.season_id) if s.status == "published"
    ]
    rows = stored_rows(ingested, published)
    suppliers = stored_suppliers(ingested, published)
    checked = 0
    for device in rows.get_column("device_id").unique().sort().to_list()[:12]:
        mine = rows.filter(device_id=device)
        owner = mine.get_column("owner_id").drop_nulls().first()
        if owner is None:
            continue
        found = published_standing(ingested, POLICY.season_id, owner, device)
        assert found is not None and found.snapshot.id == published.id
        expected = mine.filter(owner_id=owner)
        assert found.device_rows.drop("reward_decimal").equals(expected)
        paid = suppliers.filter(owner_id=owner)
        assert found.payout is not None
        assert found.payout["reward"] == paid.get_column("reward").item()
        checked += 1
    assert checked >= 5
    nobody = published_standing(ingested, POLICY.season_id, "not-an-owner", "gpu-nope")
    assert nobody is not None and nobody.payout is None and nobody.device_rows.is_empty()


@pytest.fixture(scope="module")
def replaced(databases, seeded, small_fleet, tmp_path_factory) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    """v1 published, then the incident confirmed and v2 run and published over it."""
    engine, proposed = prepared_copy(databases, seeded, "sqlite", small_fleet)
    decide(engine, proposed, status="confirmed", by="admin.example.org", now=NOW)
    v2 = run_snapshot(
        engine, POLICY, epochs=range(POLICY.epoch_count), trigger="manual", triggered_by="t",
        reason="incident confirmed", clock=lambda: NOW, key=KEY, lock_ttl=LOCK,
    ).snapshot  # fmt: skip
    publish(engine, v2, by="t", clock=lambda: NOW, lock_ttl=LOCK)
    yield from serve_site(engine, tmp_path_factory.mktemp("replaced"), proposed)
    engine.dispose()


def test_a_replaced_version_says_which_replaced_it_and_what_changed_for_me(
    replaced: Site,
) -> None:
    snaps = {s.version: s for s in list_snapshots(replaced.engine, POLICY.season_id)}
    before = stored_suppliers(replaced.engine, snaps[1])
    after = stored_suppliers(replaced.engine, snaps[2])
    changed = before.join(after, on="owner_id", suffix="_v2").filter(
        pl.col("reward") != pl.col("reward_v2")
    )
    first = changed.row(0, named=True)
    owner, old, new = first["owner_id"], first["reward"], first["reward_v2"]
    html = sign_in(replaced, owner, "supplier").get("/app/supplier/rewards").text

    def section(version: int) -> str:
        found = re.search(
            rf'<section class="payout" data-snapshot="ignition-s2-v{version}".*?</section>',
            html,
            re.S,
        )
        assert found is not None
        return found.group(0)

    assert 'data-replaced-by="ignition-s2-v2"' in section(1)
    words = re.sub(r"<[^>]+>", "", section(1))
    decimals = POLICY.token_decimals
    for amount in (old, new):
        text = tokens(f"{amount // 10**decimals}.{amount % 10**decimals:0{decimals}d}")
        assert f"{text} tokens" in words
    assert "data-replaced-by" not in section(2)


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("0.5", "0.5"),
        ("1234567.000001", "1,234,567.000001"),
        ("-1000", "-1,000"),
        ("999", "999"),
        ("-0.25", "-0.25"),
        ("12345678901234567890.1", "12,345,678,901,234,567,890.1"),
    ],
)
def test_token_amounts_get_separators_and_keep_every_digit(amount: str, shown: str) -> None:
    assert tokens(amount) == shown
    assert tokens(amount).replace(",", "") == amount
