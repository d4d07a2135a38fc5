"""Every page against every role and no session, over real HTTP after a real sign-in; a
supplier never sees another's device; forms need their CSRF token; the pages' numbers are the
API's and the view's (issue 6)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from html import unescape

import httpx
import orjson
import pytest
from sqlalchemy import text

from rewards.core.timeline import grid_state
from rewards.services.eligibility_view import supplier_standing
from rewards.web.app import PAGE_ROUTERS
from tests.api.loopback import stream_chunked
from tests.seeded import POLICY
from tests.web.conftest import Site, csrf_of, serve_site, sign_in

ROLES = ("supplier", "finance", "admin")

# (path, who may see it); {device} is the supplier's own device, {incident} the proposal
PAGES = [
    ("/app", "any"),
    ("/app/supplier", "supplier"),
    ("/app/supplier/devices/{device}", "supplier"),
    ("/app/supplier/rewards", "supplier"),
    ("/app/admin", "admin"),
    ("/app/admin/incidents/new", "admin"),
    ("/app/admin/incidents/{incident}/edit", "admin"),
    ("/app/admin/incidents/{incident}/impact?change=confirm", "admin"),
    ("/app/admin/incidents/{incident}/impact.csv?change=confirm", "admin"),
    ("/app/admin/snapshots", "admin"),
    ("/app/admin/snapshots/diff?before=v1&after=v1", "admin"),
    ("/app/admin/snapshots/diff.csv?before=v1&after=v1", "admin"),
    ("/app/admin/snapshots/v1/publish", "admin"),
    ("/app/admin/alerts", "admin"),
    ("/app/admin/devices", "admin"),
    ("/app/admin/devices/{device}", "admin"),
    ("/app/admin/metadata", "admin"),
    ("/app/admin/audit", "admin"),
    ("/app/finance", "finance"),
    ("/app/finance/snapshots/v1", "finance"),
    ("/app/finance/adjustments?paid=v1&due=v1", "finance"),
    ("/app/finance/snapshots/v1/export/manifest.json", "finance"),
    ("/app/finance/adjustments.csv?paid=v1&due=v1", "finance"),
]
FORMS = [
    ("/app/admin/incidents", "admin"),
    ("/app/admin/incidents/{incident}/confirm", "admin"),
    ("/app/admin/incidents/{incident}/unconfirm", "admin"),
    ("/app/admin/incidents/{incident}/dismiss", "admin"),
    ("/app/admin/incidents/{incident}/edit", "admin"),
    ("/app/admin/snapshots/run", "admin"),
    ("/app/admin/snapshots/v1/publish", "admin"),
    ("/app/admin/alerts/1/clear", "admin"),
    ("/app/admin/metadata/revert", "admin"),
    ("/app/sign-out", "any"),
]
# sign-in itself, and the development provider's own endpoints
OPEN = {"/app/sign-in", "/app/auth/callback", "/app/signed-out"}


@pytest.fixture(scope="module")
def clients(site: Site) -> Iterator[dict[str, httpx.Client]]:
    made = {
        "supplier": sign_in(site, site.owners[0], "supplier"),
        "other-supplier": sign_in(site, site.owners[1], "supplier"),
        "finance": sign_in(site, "finance.example.org", "finance"),
        "admin": sign_in(site, "admin.example.org", "admin"),
        "none-role": sign_in(site, "nobody.example.org"),
        "anonymous": httpx.Client(base_url=site.url, follow_redirects=False, timeout=30),
    }
    yield made
    for client in made.values():
        client.close()


def _fill(path: str, site: Site) -> str:
    return path.format(device=site.devices_of(site.owners[0])[0], incident=site.proposed)


def test_the_tables_cover_every_page_and_form(site: Site) -> None:
    pattern = re.compile(r"\{[a-z_]+\}")
    routes = {
        (method, pattern.sub("*", route.path))  # type: ignore[attr-defined]
        for router in PAGE_ROUTERS
        for route in router.routes
        if getattr(route, "path", "").startswith("/app") and route.path not in OPEN  # type: ignore[attr-defined]
        for method in getattr(route, "methods", ()) - {"HEAD"}
    }
    listed = {
        (
            "GET",
            pattern.sub(
                "*", p.split("?")[0].replace("v1", "{ref}").replace("manifest.json", "{name}")
            ),
        )
        for p, _ in PAGES
    }
    listed |= {
        ("POST", pattern.sub("*", p.replace("v1", "{ref}").replace("/1/", "/{alert_id}/")))
        for p, _ in FORMS
    }
    assert routes == listed


@pytest.mark.parametrize(("path", "allowed"), PAGES)
def test_each_page_admits_only_its_role(
    site: Site, clients: dict[str, httpx.Client], path: str, allowed: str
) -> None:
    url = _fill(path, site)
    anonymous = clients["anonymous"].get(url)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/app/sign-in?next=")
    for who in (*ROLES, "none-role"):
        answer = clients[who].get(url)
        if allowed in ("any", who):
            expected = {409} if path.endswith("/publish") else {200}  # v1 is published
            if "adjustments" in path:
                expected = {422}  # v1 against itself: refused, as the only published one
            assert answer.status_code in expected, (who, url, answer.text[:300])
        else:
            assert answer.status_code == 403, (who, url)
            assert "Not allowed" in answer.text


@pytest.mark.parametrize(("path", "allowed"), FORMS)
def test_each_form_refuses_other_roles_and_missing_tokens(
    site: Site, clients: dict[str, httpx.Client], path: str, allowed: str
) -> None:
    url = _fill(path, site)
    anonymous = clients["anonymous"].post(url, data={"csrf": "x"})
    if path == "/app/sign-out":
        assert anonymous.status_code == 403  # no session, so no CSRF token either
    else:
        assert anonymous.status_code == 303  # to sign-in, before its body is read
        assert anonymous.headers["location"].startswith("/app/sign-in?next=")
    for who in (*ROLES, "none-role"):
        client = clients[who]
        assert client.post(url).status_code == 403  # no token
        assert client.post(url, data={"csrf": "forged"}).status_code == 403
        if allowed not in ("any", who):
            answer = client.post(url, data={"csrf": csrf_of(client, "/app")})
            assert answer.status_code == 403, (who, url)


def test_a_form_from_another_site_is_refused(site: Site, clients: dict[str, httpx.Client]) -> None:
    admin = clients["admin"]
    token = csrf_of(admin, "/app/admin")
    answer = admin.post(
        f"/app/admin/incidents/{site.proposed}/dismiss",
        data={"csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    with site.engine.connect() as connection:
        status = connection.execute(
            text("SELECT status FROM incidents WHERE id = :i"), {"i": site.proposed}
        ).scalar_one()
    assert status == "proposed"


def _rows(site: Site, owner: str) -> list[dict[str, object]]:
    standing = supplier_standing(site.engine, POLICY.season_id, owner, limit=10**6)
    assert standing is not None
    rows: list[dict[str, object]] = orjson.loads(standing.document)
    return rows


def test_the_grid_shows_each_of_my_device_epochs_as_the_view_has_it(
    site: Site, clients: dict[str, httpx.Client]
) -> None:
    owner = site.owners[0]
    page = clients["supplier"].get("/app/supplier").text
    cells = re.findall(r'data-device="([^"]+)" data-epoch="(\d+)" data-state="([a-z]*)"', page)
    shown = {(d, int(e)): s for d, e, s in cells if s}
    expected = {(r["device_id"], r["epoch"]): grid_state(r, POLICY) for r in _rows(site, owner)}
    assert shown == expected and expected
    for device in site.devices_of(owner):
        assert f'data-device="{device}"' in page
    for other in site.devices_of(site.owners[1]):
        assert other not in page


def _pieces(html: str, epoch: int) -> dict[str, float]:
    section = re.search(rf'<section class="epoch" data-epoch="{epoch}".*?</section>', html, re.S)
    assert section is not None
    micros: dict[str, int] = {}
    for kind, start, end in re.findall(
        r'data-kind="([a-z]+)" [^>]*data-us="(\d+) (\d+)"', section.group(0)
    ):
        micros[kind] = micros.get(kind, 0) + int(end) - int(start)
    return {kind: us / 1_000_000 for kind, us in micros.items()}


def test_a_device_page_draws_exactly_the_time_that_counted(
    site: Site, clients: dict[str, httpx.Client]
) -> None:
    owner = site.owners[0]
    rows = _rows(site, owner)
    checked = 0
    for device in site.devices_of(owner)[:3]:
        html = clients["supplier"].get(f"/app/supplier/devices/{device}").text
        for row in (r for r in rows if r["device_id"] == device):
            pieces = _pieces(html, int(row["epoch"]))  # type: ignore[call-overload]
            # drawn to the microsecond
            for kind, column in (("online", "online_s"), ("bridged", "bridged_s"),
                                 ("credited", "credited_s")):  # fmt: skip
                assert abs(pieces.get(kind, 0.0) - float(row[column])) < 1e-6, (device, row, kind)  # type: ignore[arg-type]
            assert unescape(str(row["explanation"])) in unescape(html)
            checked += 1
    assert checked >= 3


def test_another_suppliers_device_is_the_same_404_as_none(
    site: Site, clients: dict[str, httpx.Client]
) -> None:
    theirs = site.devices_of(site.owners[1])[0]
    mine = clients["supplier"]
    other = mine.get(f"/app/supplier/devices/{theirs}")
    missing = mine.get("/app/supplier/devices/gpu-999999")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
    assert clients["other-supplier"].get(f"/app/supplier/devices/{theirs}").status_code == 200


def test_my_rewards_page_carries_my_proof_and_nobody_elses(
    site: Site, clients: dict[str, httpx.Client]
) -> None:
    page = clients["supplier"].get("/app/supplier/rewards").text
    data = re.search(r'<script type="application/json" class="proof-data">(.*?)</script>', page)
    assert data is not None
    proof = orjson.loads(data.group(1))
    assert proof["owner_id"] == site.owners[0] and proof["amount_text"] == str(proof["leaf"][3])
    salt = bytes.fromhex(proof["salt"])  # the leaf names my commitment, not my id
    assert proof["leaf"][0] == hashlib.sha256(salt + site.owners[0].encode()).hexdigest()
    with site.engine.connect() as connection:
        root = connection.execute(
            text("SELECT merkle_root FROM snapshots WHERE status = 'published'")
        ).scalar_one()
    assert proof["root"] == root
    assert site.owners[1] not in page


def test_finance_downloads_are_the_apis_files(site: Site, clients: dict[str, httpx.Client]) -> None:
    finance = clients["finance"]
    page = finance.get("/app/finance").text
    with site.engine.connect() as connection:
        total = connection.execute(
            text("SELECT total_paid FROM snapshots WHERE status = 'published'")
        ).scalar_one()
    assert f'data-total="{total}"' in page
    manifest = finance.get("/app/finance/snapshots/v1/export/manifest.json")
    assert manifest.status_code == 200
    assert manifest.json()["totals"]["paid"] == total
    itself = finance.get("/app/finance/adjustments.csv?paid=v1&due=v1")
    assert itself.status_code == 422 and "nothing to settle" in itself.text


def test_pages_forbid_framing_and_outside_scripts(clients: dict[str, httpx.Client]) -> None:
    answer = clients["admin"].get("/app/admin")
    policy = answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"


def test_an_admin_decides_reruns_and_publishes_through_the_forms(
    site: Site, clients: dict[str, httpx.Client]
) -> None:
    admin = clients["admin"]
    token = csrf_of(admin, "/app/admin")
    confirmed = admin.post(f"/app/admin/incidents/{site.proposed}/confirm", data={"csrf": token})
    assert confirmed.status_code == 303
    assert site.proposed in admin.get("/app/admin").text.split("Confirmed incidents")[1]
    ran = admin.post("/app/admin/snapshots/run", data={"csrf": token, "reason": "confirmed"})
    assert ran.status_code == 303
    said = re.search(r'data-said="ran:([^"]+)">([^<]+)<', admin.get(ran.headers["location"]).text)
    assert said is not None, "the next page says what the run made"
    made = said.group(1)
    assert re.fullmatch(
        rf"Snapshot {made} created: [\d,]+ device-epochs differ from \S+-v1\.", said.group(2)
    )
    assert "data-said" not in admin.get("/app/admin/snapshots").text  # said once
    diff = admin.get(f"/app/admin/snapshots/diff?before=v1&after={made}").text
    changed = re.search(r'data-fact="devices_changed">([\d,]+)<', diff)
    assert changed is not None and int(changed.group(1).replace(",", "")) > 0
    epochs = re.search(r'data-fact="device_epochs_changed">([\d,]+)<', diff)
    assert epochs is not None
    table = admin.get(f"/app/admin/snapshots/diff.csv?before=v1&after={made}").text
    assert len(table.splitlines()) - 1 == int(epochs.group(1).replace(",", ""))
    assert f'data-total="{epochs.group(1).replace(",", "")}"' in diff
    days = re.findall(r'<tr data-epoch="\d+"><th scope="row">(\d{4}-\d\d-\d\d)</th>', diff)
    assert len(days) == len(made_epochs(site, "v1") | made_epochs(site, made))
    assert days == sorted(days)
    confirm_page = admin.get(f"/app/admin/snapshots/{made}/publish")
    assert confirm_page.status_code == 200 and "cannot be undone" in confirm_page.text
    wrong = admin.post(
        f"/app/admin/snapshots/{made}/publish", data={"csrf": token, "confirm": "v1"}
    )
    assert wrong.status_code == 422
    published = admin.post(
        f"/app/admin/snapshots/{made}/publish", data={"csrf": token, "confirm": made}
    )
    assert published.status_code == 303
    with site.engine.connect() as connection:
        statuses = dict(connection.execute(text("SELECT version, status FROM snapshots")).all())
        audit = connection.execute(
            text("SELECT count(*) FROM audit_log WHERE actor = 'admin.example.org'")
        ).scalar_one()
    assert statuses[1] == "superseded"
    assert statuses[int(made.rsplit("v", 1)[1])] == "published"
    assert audit >= 3  # the decision, the run and the publication, each audited


def made_epochs(site: Site, made: str) -> set[int]:
    with site.engine.connect() as connection:
        first, last = connection.execute(
            text("SELECT epoch_first, epoch_last FROM snapshots WHERE version = :v"),
            {"v": int(made.rsplit("v", 1)[1])},
        ).one()
    return set(range(first, last + 1))


def test_the_incident_form_says_which_devices_the_incident_covers(
    site: Site, clients: dict[str, httpx.Client]
) -> None:
    form = clients["admin"].get(f"/app/admin/incidents/{site.proposed}/edit").text
    assert "covering every device" in form  # a detector's proposal covers the whole fleet
    assert re.search(r'name="scope_kind" value="all" checked', form)


def test_an_admin_edits_an_incident_through_its_form(
    site: Site, clients: dict[str, httpx.Client]
) -> None:
    admin = clients["admin"]
    form = admin.get(f"/app/admin/incidents/{site.proposed}/edit").text
    start = re.search(r'name="start" [^>]*value="([^"]+)"', form)
    end = re.search(r'name="end" [^>]*value="([^"]+)"', form)
    assert start is not None and end is not None
    edited = {
        "csrf": csrf_of(admin, "/app/admin"),
        "start": start.group(1),
        "end": end.group(1),
        "recovery_deadline_h": "36",
        "reason": '<script>alert("x")</script> checked by hand',
    }
    assert admin.post(f"/app/admin/incidents/{site.proposed}/edit", data=edited).status_code == 303
    backwards = {**edited, "start": end.group(1), "end": start.group(1), "reason": "typed"}
    answer = admin.post(f"/app/admin/incidents/{site.proposed}/edit", data=backwards)
    assert answer.status_code == 422  # said in the page, nothing stored
    assert "Not saved: end must be after start" in answer.text
    assert 'value="typed"' in answer.text and f'value="{end.group(1)}"' in answer.text
    with site.engine.connect() as connection:
        deadline, reason = connection.execute(
            text("SELECT recovery_deadline_us, reason FROM incidents WHERE id = :i"),
            {"i": site.proposed},
        ).one()
        audited = connection.execute(
            text("SELECT count(*) FROM audit_log WHERE subject = :i AND actor = :a"),
            {"i": site.proposed, "a": "admin.example.org"},
        ).scalar_one()
    assert (deadline, reason) == (36 * 3600 * 1_000_000, edited["reason"])
    assert audited >= 1
    shown = admin.get(f"/app/admin/incidents/{site.proposed}/edit").text
    assert "<script>alert" not in shown and "&lt;script&gt;alert" in shown  # escaped


def test_page_writes_are_watched_for_surges_like_the_apis(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A burst of page writes raises a write-surge alert and blocks the actor."""
    for surged in serve_site(
        site.engine, tmp_path_factory.mktemp("surge"), site.proposed, surge_min_writes=3
    ):
        admin = sign_in(surged, "burst.example.org", "admin")
        token = csrf_of(admin, "/app/admin")
        answers = [
            admin.post(f"/app/admin/incidents/{site.proposed}/dismiss", data={"csrf": token})
            for _ in range(5)
        ]
    # the write that reaches the threshold raises the alert and is refused, as are later ones
    assert [a.status_code for a in answers] == [303, 303, 403, 403, 403]
    with site.engine.connect() as connection:
        alerts = connection.execute(
            text("SELECT kind, route, blocked FROM alerts WHERE actor = 'burst.example.org'")
        ).all()
    assert [tuple(a) for a in alerts] == [("write-surge", "admin.incidents.dismiss", True)]


def test_a_chunked_form_without_a_session_is_refused_before_it_is_read(site: Site) -> None:
    """Issue 12, item 2: the pages' forms, like the API, read no body from a stranger."""
    status, sent = stream_chunked(site.url, "/app/admin/snapshots/run", {}, budget=16 * 2**20)
    assert status == 303 and sent < 2 * 2**20
