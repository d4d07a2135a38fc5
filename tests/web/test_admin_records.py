"""An admin's look-ups on the pages (issue 17, items 3 and 5): any device by id with its
owner, metadata history, timeline and published rows; metadata changes by who and when,
and their revert; the audit log filtered by who, what and when, paged, with its chain
checked on demand."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from html import unescape

import httpx
import pytest

from rewards.services.audit_log import audit_entries
from rewards.services.devices import metadata_changes
from rewards.services.snapshots import published_device
from tests.seeded import POLICY
from tests.web.conftest import Site, hidden_fields, sign_in


@pytest.fixture(scope="module")
def admin(site: Site) -> Iterator[httpx.Client]:
    client = sign_in(site, "admin.example.org", "admin")
    yield client
    client.close()


def test_a_device_is_found_by_its_exact_id_with_owner_history_and_timeline(
    site: Site, admin: httpx.Client
) -> None:
    device = site.devices_of(site.owners[3])[0]
    found = admin.get("/app/admin/devices", params={"q": device})
    assert found.status_code == 303 and found.headers["location"] == f"/app/admin/devices/{device}"
    page = admin.get(found.headers["location"]).text
    assert f'data-fact="owner">{site.owners[3]}<' in page
    history = metadata_changes(site.engine, device_id=device, limit=1000)
    assert re.findall(r'<tr data-version="(\d+)"', page) == [str(v.id) for v in history]
    published = published_device(site.engine, POLICY.season_id, device)
    assert published is not None
    rows = published[1]
    paid = dict(
        re.findall(
            r'<section class="epoch" data-epoch="(\d+)">\s*<h3>[^<]*<span data-paid="(yes|no)"',
            page,
        )
    )
    assert paid == {
        str(e): "yes" if ok else "no" for e, ok in rows.select("epoch", "eligible").iter_rows()
    }
    assert "<svg" in page

    missing = admin.get("/app/admin/devices", params={"q": device + "-nope"})
    assert missing.status_code == 404 and "No device" in missing.text
    assert admin.get("/app/admin/devices/" + device + "-nope").status_code == 404
    assert admin.get("/app/admin/devices", params={"q": "<b>"}).status_code == 422


def test_the_audit_log_filters_by_who_what_and_when_and_pages(
    site: Site, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rewards.web.admin_records.A_PAGE", 2)
    every = audit_entries(site.engine, limit=100_000)
    assert len(every) >= 3
    seen, address = [], "/app/admin/audit"
    while address:
        html = admin.get(address).text
        seen += [int(i) for i in re.findall(r'<tr data-entry="(\d+)">', html)]
        found = re.search(r'<a rel="next" href="([^"]+)"', html)
        address = f"/app/admin/audit{unescape(found.group(1))}" if found else ""
    assert seen == [e.id for e in every]  # newest first, each once

    actor, action = every[-1].actor, every[-1].action
    family = action.split(".")[0] + "."
    for params, keep in (
        ({"actor": actor}, lambda e: e.actor == actor),
        ({"action": action}, lambda e: e.action == action),
        ({"action": family}, lambda e: e.action.startswith(family)),
        (
            {"since": (every[-1].at + timedelta(microseconds=1)).isoformat()},
            lambda e: e.at > every[-1].at,
        ),
    ):
        monkeypatch.setattr("rewards.web.admin_records.A_PAGE", 1000)
        html = admin.get("/app/admin/audit", params=params).text
        listed = [int(i) for i in re.findall(r'<tr data-entry="(\d+)">', html)]
        assert listed == [e.id for e in every if keep(e)], params
    assert admin.get("/app/admin/audit", params={"action": "DROP TABLE"}).status_code == 422

    checked = admin.get("/app/admin/audit", params={"check": "true"}).text
    assert 'data-chain="intact"' in checked and f"all {len(every):,} entries" in checked


def test_metadata_changes_are_listed_by_writer_and_reverted_from_the_page(
    site: Site, admin: httpx.Client
) -> None:
    every = metadata_changes(site.engine, limit=10_000)
    writer = min({v.actor for v in every}, key=lambda a: sum(v.actor == a for v in every))
    writes = [v for v in every if v.actor == writer]  # the fleet's one rogue worker
    first = min(v.valid_from for v in writes)
    since, until = first, first + timedelta(hours=1)
    window = [v for v in writes if since <= v.valid_from < until]
    page = admin.get(
        "/app/admin/metadata",
        params={"actor": writer, "since": since.isoformat(), "until": until.isoformat()},
    ).text
    listed = [int(i) for i in re.findall(r'<tr data-version="(\d+)"', page)]
    assert listed == [v.id for v in window][:100]
    form = hidden_fields(page.split('data-form="revert"')[1])
    assert form["actor"] == writer
    answer = admin.post("/app/admin/metadata/revert", data={**form, "reason": "bad feed hour"})
    assert answer.status_code == 303
    said = re.search(
        r'data-said="reverted:(\d+)">([^<]+)<', admin.get(answer.headers["location"]).text
    )
    assert said is not None and int(said.group(1)) == len(window)
    assert said.group(2).startswith(f"Reverted {len(window):,} metadata change")
    after = {v.id: v for v in metadata_changes(site.engine, actor=writer, limit=10_000)}
    assert all(after[v.id].reverted_by == "admin.example.org" for v in window)
    refused = admin.post(
        "/app/admin/metadata/revert", data={**form, "until": form["since"], "reason": "x"}
    )
    assert refused.status_code == 422 and "until must be after since" in refused.text
