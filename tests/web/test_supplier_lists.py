"""A supplier's device list at any size (issue 17, item 3): a page at a time with the
count ("100 of 2,000"), searchable by device id, each device online or offline by when it
was last seen; never another supplier's device, whatever is searched."""

from __future__ import annotations

import re
from html import unescape

import httpx
import pytest
from sqlalchemy import text

from tests.seeded import POLICY
from tests.web.conftest import Site, sign_in

ROW = re.compile(r'<tr data-device="([^"]+)" data-online="(yes|no)">')
COUNT = re.compile(r'data-shown="(\d+)" data-total="(\d+)"')
NEXT = re.compile(r'<a rel="next" href="([^"]+)"')


def _busiest(site: Site) -> str:
    return max(site.owners, key=lambda owner: len(site.devices_of(owner)))


def _mixed(site: Site) -> str:
    """A supplier with devices both online and offline (the april-2024 fleet has some
    never back)."""
    with site.engine.connect() as connection:
        newest = connection.execute(text('SELECT max("end") FROM open_intervals')).scalar_one()
        ends = dict(connection.execute(text('SELECT device_id, "end" FROM open_intervals')).all())

    def online(device: str) -> bool:
        return device in ends and ends[device] >= newest - POLICY.liveness_timeout_us

    return next(o for o in site.owners if {online(d) for d in site.devices_of(o)} == {True, False})


def _walk(client: httpx.Client, first: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Every device listed, following the pager from `first`, and each page's count."""
    seen, counts, page = [], [], first
    while True:
        html = client.get(page).text
        seen += [device for device, _ in ROW.findall(html)]
        shown, total = COUNT.search(html).groups()  # type: ignore[union-attr]
        counts.append((int(shown), int(total)))
        found = NEXT.search(html)
        if found is None:
            return seen, counts
        page = unescape(found.group(1))


def test_the_list_pages_through_every_device_with_its_count(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rewards.web.supplier.OWNED_A_PAGE", 2)
    owner = _busiest(site)
    mine = site.devices_of(owner)
    assert len(mine) >= 3
    client = sign_in(site, owner, "supplier")
    seen, counts = _walk(client, "/app/supplier")
    assert seen == mine  # all of them, in order, none twice
    assert {total for _, total in counts} == {len(mine)}
    assert all(shown == 2 for shown, _ in counts[:-1]) and counts[-1][0] >= 1


def test_search_finds_my_devices_by_id_and_never_anothers(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rewards.web.supplier.OWNED_A_PAGE", 2)
    owner, other = site.owners[0], site.owners[1]
    mine = site.devices_of(owner)
    client = sign_in(site, owner, "supplier")
    part = mine[-1][-3:]
    seen, counts = _walk(client, f"/app/supplier?q={part}")
    assert seen == [d for d in mine if part in d]
    assert counts[-1][1] == len(seen)
    theirs = site.devices_of(other)[0]
    html = client.get("/app/supplier", params={"q": theirs}).text
    assert not ROW.findall(html) and "None of your devices" in html
    bad = client.get("/app/supplier", params={"q": "<script>x"})
    assert bad.status_code == 200 and "<script>x" not in bad.text
    assert "&lt;script&gt;x" in bad.text and not ROW.findall(bad.text)
    assert client.get("/app/supplier", params={"q": "x" * 129}).status_code == 422


def test_each_device_is_online_or_offline_by_when_it_was_last_seen(site: Site) -> None:
    """Online: seen within a liveness timeout of the newest heartbeat in the fleet."""
    with site.engine.connect() as connection:
        newest = connection.execute(text('SELECT max("end") FROM open_intervals')).scalar_one()
        ends = dict(connection.execute(text('SELECT device_id, "end" FROM open_intervals')).all())

    def state(device: str) -> str:
        return (
            "yes"
            if device in ends and ends[device] >= newest - POLICY.liveness_timeout_us
            else "no"
        )

    # a supplier with devices of both kinds (the april-2024 fleet has some never back)
    owner = next(o for o in site.owners if {state(d) for d in site.devices_of(o)} == {"yes", "no"})
    html = sign_in(site, owner, "supplier").get("/app/supplier").text
    assert dict(ROW.findall(html)) == {d: state(d) for d in site.devices_of(owner)}


GRID_ROW = re.compile(r'<tr><th scope="row"><a href="/app/supplier/devices/([^"]+)">')
GRID_NEXT = re.compile(r'<a rel="next" data-grid="(\d+)"')


def test_the_grid_pages_too_and_its_columns_are_days(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rewards.web.supplier.GRID_A_PAGE", 2)
    owner = _busiest(site)
    client = sign_in(site, owner, "supplier")
    html = client.get("/app/supplier").text
    total = int(re.search(r'data-grid-total="(\d+)"', html).group(1))  # type: ignore[union-attr]
    seen, page = [], 0
    while True:
        html = client.get("/app/supplier", params={"grid": page}).text
        rows = GRID_ROW.findall(html)
        assert 1 <= len(rows) <= 2
        seen += rows
        found = GRID_NEXT.search(html)
        if found is None:
            break
        page = int(found.group(1))
    assert len(seen) == len(set(seen)) == total >= 3
    assert seen == sorted(seen)
    heads = re.findall(
        r'<th scope="col" data-epoch="(\d+)" title="epoch \d+: ([0-9-]+) \(UTC\)">([^<]*)</th>',
        html,
    )
    assert heads and all(label == day[5:] for _, day, label in heads)  # 04-20, not 0
    assert client.get("/app/supplier", params={"grid": -1}).status_code == 422


def test_the_list_filters_online_or_offline_and_the_grid_those_that_missed_an_epoch(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rewards.web.supplier.OWNED_A_PAGE", 2)
    monkeypatch.setattr("rewards.web.supplier.GRID_A_PAGE", 2)
    owner = _mixed(site)
    client = sign_in(site, owner, "supplier")
    kinds = {}
    for state, mark in (("online", "yes"), ("offline", "no")):
        seen, counts = _walk(client, f"/app/supplier?state={state}")
        pages = [client.get(f"/app/supplier?state={state}&after={d}").text for d in seen[:-1]]
        assert all(set(dict(ROW.findall(p)).values()) <= {mark} for p in pages)
        assert {total for _, total in counts} == {len(seen)}
        kinds[state] = seen
    assert sorted(kinds["online"] + kinds["offline"]) == site.devices_of(owner)
    assert kinds["online"] and kinds["offline"]
    assert client.get("/app/supplier", params={"state": "asleep"}).status_code == 422

    html = client.get("/app/supplier", params={"show": "missed", "state": ""}).text
    missed = int(re.search(r'data-grid-total="(\d+)"', html).group(1))  # type: ignore[union-attr]
    cells = re.findall(r'data-device="([^"]+)" data-epoch="\d+" data-state="(\w*)"', html)
    shown = {d for d, _ in cells}
    assert all({s for d2, s in cells if d2 == d} & {"ineligible", "silent"} for d in shown)
    full = int(re.search(r'data-grid-total="(\d+)"', client.get("/app/supplier").text).group(1))  # type: ignore[union-attr]
    assert 0 < missed <= full
