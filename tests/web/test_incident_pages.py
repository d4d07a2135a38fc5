"""An admin's incident work on the pages (issue 17, items 4 and 5): before confirming,
editing or un-confirming, a preview of what it would change (the service's numbers, per
day, per device paged and downloadable, per supplier) with the button that makes it;
declaring with a scope; a mistaken form that comes back as typed; messages in words."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from html import unescape

import httpx
import pytest
from sqlalchemy import text

from rewards.services.impact import impact
from rewards.web.templates import as_tokens
from tests.seeded import POLICY
from tests.web.conftest import Site, csrf_of, hidden_fields, sign_in

FACT = re.compile(r'data-fact="([a-z_]+)"[^>]*>([^<]+)<')
DEVICE_ROW = re.compile(r'<tr data-device="([^"]+)">')
SAID = re.compile(r'data-said="[^"]*">([^<]+)<')


@pytest.fixture(scope="module")
def admin(site: Site) -> Iterator[httpx.Client]:
    client = sign_in(site, "admin.example.org", "admin")
    yield client
    client.close()


def _status(site: Site, incident_id: str) -> str:
    with site.engine.connect() as connection:
        found = connection.execute(
            text("SELECT status FROM incidents WHERE id = :i"), {"i": incident_id}
        )
        return str(found.scalar_one())


def _said(client: httpx.Client, answer: httpx.Response) -> str:
    assert answer.status_code == 303, answer.text[:500]
    found = SAID.search(client.get(answer.headers["location"]).text)
    assert found is not None
    return found.group(1)


def test_the_confirm_preview_shows_what_the_service_computes_then_confirms(
    site: Site, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rewards.web.admin_incidents.A_PAGE", 5)
    assert _status(site, site.proposed) == "proposed"
    fleet = admin.get("/app/admin").text
    assert f"/app/admin/incidents/{site.proposed}/impact?change=confirm" in fleet
    expected = impact(site.engine, POLICY, site.proposed, "confirm")
    assert expected.rows.height > 5  # more than a page

    page = admin.get(f"/app/admin/incidents/{site.proposed}/impact", params={"change": "confirm"})
    assert page.status_code == 200
    facts = dict(FACT.findall(page.text))
    assert int(facts["regained"].replace(",", "")) == expected.summary.device_epochs_regained
    assert facts["moved"].startswith(as_tokens(expected.summary.moved, POLICY.token_decimals))
    days = re.findall(r'<tr data-epoch="(\d+)">', page.text)
    assert [int(d) for d in days] == expected.per_day["epoch"].to_list()
    assert f'data-shown="5" data-total="{expected.rows.height}"' in page.text

    base = f"/app/admin/incidents/{site.proposed}/impact"
    listed, address = [], f"{base}?change=confirm"
    while address:
        html = admin.get(address).text
        listed += DEVICE_ROW.findall(html)
        found = re.search(r'<a rel="next" href="([^"]+)"', html)
        address = f"{base}{unescape(found.group(1))}" if found else ""
    assert listed == expected.rows["device_id"].to_list()

    download = admin.get(f"/app/admin/incidents/{site.proposed}/impact.csv?change=confirm")
    assert download.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(download.text)))
    assert [r["device_id"] for r in table] == expected.rows["device_id"].to_list()
    assert sum(int(r["delta"]) for r in table) == expected.rows["delta"].sum()
    assert _status(site, site.proposed) == "proposed"  # looking changed nothing

    button = hidden_fields(page.text)
    assert "Confirm " + site.proposed in page.text
    said = _said(admin, admin.post(f"/app/admin/incidents/{site.proposed}/confirm", data=button))
    assert said == f"Incident {site.proposed} confirmed: it counts from the next snapshot run."
    assert _status(site, site.proposed) == "confirmed"


def test_an_edit_is_previewed_from_its_form_and_saved_from_the_preview(
    site: Site, admin: httpx.Client
) -> None:
    form = hidden_fields(admin.get(f"/app/admin/incidents/{site.proposed}/edit").text)
    typed = {
        "start": "2024-04-25T08:00",
        "end": "2024-04-25T09:00",
        "recovery_deadline_h": "2",
        "reason": "narrowed by hand",
        "scope_kind": "all",
    }
    preview = admin.get(
        f"/app/admin/incidents/{site.proposed}/impact", params={"change": "edit", **typed}
    )
    assert preview.status_code == 200 and 'data-impact="edit"' in preview.text
    carried = hidden_fields(preview.text)
    assert {k: carried[k] for k in typed} == typed
    said = _said(admin, admin.post(f"/app/admin/incidents/{site.proposed}/edit", data=carried))
    assert said.startswith(f"Incident {site.proposed} changed")
    with site.engine.connect() as connection:
        deadline = connection.execute(
            text("SELECT recovery_deadline_us FROM incidents WHERE id = :i"),
            {"i": site.proposed},
        ).scalar_one()
    assert deadline == 2 * 3_600_000_000 and form["csrf"] == carried["csrf"]

    wrong = admin.get(
        f"/app/admin/incidents/{site.proposed}/impact",
        params={"change": "edit", **typed, "recovery_deadline_h": "lots"},
    )
    assert wrong.status_code == 422
    assert "recovery deadline (hours): a number" in wrong.text and 'value="lots"' in wrong.text


def test_an_incident_is_unconfirmed_after_its_preview(site: Site, admin: httpx.Client) -> None:
    if _status(site, site.proposed) != "confirmed":
        token = csrf_of(admin, "/app/admin")
        admin.post(f"/app/admin/incidents/{site.proposed}/confirm", data={"csrf": token})
    fleet = admin.get("/app/admin").text
    assert f"/app/admin/incidents/{site.proposed}/impact?change=unconfirm" in fleet
    page = admin.get(f"/app/admin/incidents/{site.proposed}/impact?change=unconfirm")
    lost = dict(FACT.findall(page.text))["lost"]
    assert int(lost.replace(",", "")) > 0  # taking it back loses what it gave
    answer = admin.post(
        f"/app/admin/incidents/{site.proposed}/unconfirm", data=hidden_fields(page.text)
    )
    assert "no longer counts" in _said(admin, answer)
    assert _status(site, site.proposed) == "proposed"
    with site.engine.connect() as connection:
        actions = connection.execute(
            text("SELECT action FROM audit_log WHERE subject = :i ORDER BY id"),
            {"i": site.proposed},
        ).scalars()
        assert list(actions)[-1] == "incident.unconfirm"


def test_declaring_keeps_what_was_typed_when_refused(site: Site, admin: httpx.Client) -> None:
    devices = site.devices_of(site.owners[0])[:2]
    typed = {
        "csrf": csrf_of(admin, "/app/admin/incidents/new"),
        "incident_id": "rack-7-power",
        "start": "2024-04-26T10:00",
        "end": "2024-04-26T12:30",
        "recovery_deadline_h": "6",
        "reason": "rack 7 lost power",
        "scope_kind": "devices",
        "scope_devices": f"{devices[0]}, gpu-nobody-has",
    }
    refused = admin.post("/app/admin/incidents", data=typed)
    assert refused.status_code == 422
    assert "unknown device" in refused.text and "gpu-nobody-has" in refused.text
    assert 'value="rack-7-power"' in refused.text and 'value="rack 7 lost power"' in refused.text
    assert 'value="devices" checked' in refused.text
    fixed = {**typed, "scope_devices": "\n".join(devices)}
    said = _said(admin, admin.post("/app/admin/incidents", data=fixed))
    assert said == "Incident rack-7-power declared and confirmed: it counts from the next run."
    with site.engine.connect() as connection:
        status, scope = connection.execute(
            text("SELECT status, scope FROM incidents WHERE id = 'rack-7-power'")
        ).one()
    assert status == "confirmed" and json.loads(scope) == {"device_ids": sorted(devices)}
    again = admin.post("/app/admin/incidents", data=fixed)
    assert again.status_code == 422 and "already exists" in again.text
