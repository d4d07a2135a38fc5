"""Every endpoint against every role and no token, over real HTTP with real signatures; and
a supplier never sees another supplier's devices or payout (issue 5)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import Engine, text

from rewards.api.app import create_app
from rewards.api.schemas import DeviceEpochOut, EligibilityPage
from rewards.api.verifier import dev_issuer, make_verifier
from rewards.core.explanations import explain
from rewards.db.engine import make_engine
from rewards.services.eligibility_view import refresh_view
from rewards.services.incidents import declare
from rewards.services.publication import publish
from rewards.services.snapshot_runs import run_snapshot
from rewards.settings import Settings, get_settings
from rewards.sim.server import BackgroundServer
from tests.seeded import KEY, NOW, POLICY, ingested_copy

ROLES = ("supplier", "finance", "admin")


@dataclass
class Api:
    url: str
    tokens: dict[str, str]  # role (or "other-supplier") -> bearer token
    owner: str
    other: str
    device: str
    engine: Engine
    settings: Settings

    def call(self, method: str, path: str, who: str | None, json: object = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.request(method, self.url + path, headers=headers, json=json, timeout=60)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(request, databases, seeded, small_fleet, tmp_path_factory) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    """One served API per database for the module (the tests only read, or confirm an
    incident, which is idempotent)."""
    ingested = make_engine(ingested_copy(databases, seeded, request.param, small_fleet))
    key = tmp_path_factory.mktemp("issuer") / "dev.pem"
    settings: Settings = get_settings(
        dev_issuer_enabled=True,
        dev_issuer_key_file=key,
        season="ignition-s2",
        surge_min_writes=10_000,  # these tests write in bursts on purpose (test_surges.py)
    )
    with ingested.connect() as connection:
        owners = connection.execute(
            text(
                "SELECT owner_id, min(device_id) FROM device_metadata WHERE valid_to IS NULL "
                "GROUP BY owner_id ORDER BY owner_id"
            )
        ).all()
    (owner, device), (other, _) = owners[0], owners[1]
    snap = run_snapshot(
        ingested,
        POLICY,
        epochs=range(7),
        trigger="manual",
        triggered_by="t",
        reason="t",
        clock=lambda: NOW,
        key=KEY,
        lock_ttl=timedelta(minutes=5),
    ).snapshot
    publish(ingested, snap, by="t", clock=lambda: NOW, lock_ttl=timedelta(minutes=5))
    refresh_view(ingested, POLICY, trigger="test", clock=lambda: NOW, lock_ttl=timedelta(minutes=5))
    declare(
        ingested,
        incident_id="inc-1",
        start=NOW,
        end=NOW + timedelta(hours=1),
        recovery_deadline=timedelta(hours=1),
        scope={"all": True},
        reason="t",
        by="t",
        now=NOW,
    )
    declare(
        ingested,
        incident_id="inc-2",
        start=NOW,
        end=NOW + timedelta(hours=1),
        recovery_deadline=timedelta(hours=1),
        scope={"all": True},
        reason="to dismiss",
        by="t",
        now=NOW,
    )
    issuer = dev_issuer(settings)
    now = datetime.now(UTC)

    def token(sub: str, *roles: str) -> str:
        return issuer.token(sub, roles, now=now, ttl=timedelta(minutes=10))

    tokens = {
        "supplier": token(owner, "supplier"),
        "other-supplier": token(other, "supplier"),
        "finance": token("finance.example.org", "finance"),
        "admin": token("admin.example.org", "admin"),
        "none-role": token("nobody.example.org"),
    }
    app = create_app(ingested, settings, make_verifier(settings))
    with BackgroundServer(app) as server:
        yield Api(server.url, tokens, owner, other, device, ingested, settings)
    ingested.dispose()


# (method, path, who may use it: "public", "any", or one role)
ENDPOINTS = [
    ("GET", "/healthz", "public"),
    ("GET", "/readyz", "public"),
    ("GET", "/metrics", "public"),
    ("GET", "/v1/explorer/devices/{device}", "public"),
    ("GET", "/v1/explorer/snapshots/v1/public/claims.ndjson", "public"),
    ("GET", "/v1/me", "any"),
    ("GET", "/v1/supplier/devices", "supplier"),
    ("GET", "/v1/supplier/rewards/v1", "supplier"),
    ("GET", "/v1/supplier/eligibility", "supplier"),
    ("GET", "/v1/finance/snapshots", "finance"),
    ("GET", "/v1/finance/snapshots/v1/export/manifest.json", "finance"),
    ("GET", "/v1/finance/adjustments?paid=v1&due=v1", "finance"),
    ("GET", "/v1/admin/incidents?status=confirmed", "admin"),
    ("POST", "/v1/admin/incidents/inc-1/confirm", "admin"),
    ("POST", "/v1/admin/incidents", "admin"),
    ("PATCH", "/v1/admin/incidents/inc-1", "admin"),
    ("POST", "/v1/admin/incidents/inc-2/dismiss", "admin"),
    ("GET", "/v1/admin/alerts", "admin"),
    ("POST", "/v1/admin/alerts/999/clear", "admin"),
    ("POST", "/v1/admin/snapshots/run", "admin"),
    ("GET", "/v1/admin/snapshots/diff?before=v1&after=v1", "admin"),
    ("POST", "/v1/admin/snapshots/v1/publish", "admin"),
    ("GET", "/v1/admin/job-runs", "admin"),
    ("GET", "/v1/admin/devices/{device}/metadata", "admin"),
    ("GET", "/v1/admin/metadata-changes?actor=registry", "admin"),
    ("POST", "/v1/admin/metadata-changes/revert", "admin"),
]
NEW_INCIDENT = {
    "id": "access-1",
    "start": "2024-04-26T00:00:00Z",
    "end": "2024-04-26T01:00:00Z",
    "recovery_deadline_s": 3600,
    "scope": {"device_ids": ["gpu-000001"]},
    "reason": "access test",
}
BODIES: dict[str, object] = {
    "/v1/admin/snapshots/run": {"reason": "access test", "epochs": "0:6"},
    "/v1/admin/incidents": NEW_INCIDENT,
    "/v1/admin/incidents/inc-1": {"reason": "edited in the access test"},
    "/v1/admin/metadata-changes/revert": {
        "actor": "nobody-wrote-this",
        "since": "2024-04-20T00:00:00Z",
        "until": "2024-04-21T00:00:00Z",
        "reason": "access test",
    },
}


@pytest.mark.parametrize(("method", "path", "door"), ENDPOINTS)
def test_every_endpoint_admits_its_role_and_refuses_the_rest(
    api: Api, method: str, path: str, door: str
) -> None:
    path = path.format(device=api.device)
    for who in (None, "none-role", *ROLES):
        response = api.call(method, path, who, json=BODIES.get(path))
        admitted = door == "public" or (who is not None and door in ("any", who))
        if admitted:
            # in: whatever the business answer (200, or 404/409 for a missing or final
            # thing), never an authentication or authorization refusal, never a 5xx
            assert response.status_code not in (401, 403), (method, path, who)
            assert response.status_code < 500, (method, path, who, response.text)
        else:
            expected = 401 if who is None else 403
            assert response.status_code == expected, (method, path, who, response.status_code)


def test_the_openapi_schema_lists_every_endpoint(api: Api) -> None:
    """...and every documented endpoint is listed in ENDPOINTS, so a new route cannot
    skip the role check above."""
    schema = httpx.get(api.url + "/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    listed = set()
    for method, path, _ in ENDPOINTS:
        template = path.split("?")[0].replace("{device}", "{device_id}")
        template = template.replace("/rewards/v1", "/rewards/{ref}")
        template = template.replace("/incidents/inc-1/", "/incidents/{incident_id}/")
        template = template.replace("/incidents/inc-2/", "/incidents/{incident_id}/")
        if template == "/v1/admin/incidents/inc-1":
            template = "/v1/admin/incidents/{incident_id}"
        template = template.replace("/alerts/999/", "/alerts/{alert_id}/")
        template = template.replace(
            "/snapshots/v1/export/manifest.json", "/snapshots/{ref}/export/{name}"
        )
        template = template.replace("/snapshots/v1/publish", "/snapshots/{ref}/publish")
        template = template.replace(
            "/snapshots/v1/public/claims.ndjson", "/snapshots/{ref}/public/{name}"
        )
        assert (method, template) in documented, template
        listed.add((method, template))
    assert documented - listed == set(), "add these routes to ENDPOINTS"


def test_a_supplier_sees_only_its_own_devices_and_payout(api: Api) -> None:
    mine = api.call("GET", "/v1/supplier/devices", "supplier").json()["devices"]
    theirs = api.call("GET", "/v1/supplier/devices", "other-supplier").json()["devices"]
    assert mine and theirs
    assert {d["device_id"] for d in mine}.isdisjoint({d["device_id"] for d in theirs})
    with api.engine.connect() as connection:
        owned = connection.execute(
            text("SELECT device_id FROM device_metadata WHERE owner_id = :o AND valid_to IS NULL"),
            {"o": api.owner},
        ).scalars()
        assert {d["device_id"] for d in mine} == set(owned)
    reward = api.call("GET", "/v1/supplier/rewards/v1", "supplier").json()
    other = api.call("GET", "/v1/supplier/rewards/v1", "other-supplier").json()
    assert reward["owner_id"] == api.owner and other["owner_id"] == api.other
    assert reward["leaf"][0] != api.owner  # the leaf names the owner's commitment
    salt = bytes.fromhex(reward["salt"])
    assert reward["leaf"][0] == hashlib.sha256(salt + api.owner.encode()).hexdigest()
    assert reward["salt"] != other["salt"]  # each owner's own secret
    # there is no parameter to ask for someone else's: query strings are ignored
    sneaky = api.call("GET", f"/v1/supplier/rewards/v1?owner_id={api.other}", "supplier")
    assert sneaky.json()["owner_id"] == api.owner


def test_a_supplier_reads_only_its_own_eligibility(api: Api) -> None:
    def pages(who: str, query: str = "") -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        after = None
        while True:
            cursor = f"&after={quote(after)}" if after else ""
            body = api.call("GET", f"/v1/supplier/eligibility?limit=5{query}{cursor}", who).json()
            EligibilityPage.model_validate(body)  # the documented shape, field for field
            assert set(body) == set(EligibilityPage.model_fields)
            for row in body["device_epochs"]:
                assert set(row) == set(DeviceEpochOut.model_fields)
                words = {**row, "crediting_incidents": ";".join(row["crediting_incidents"])}
                assert row["explanation"] == explain(words, POLICY)
            rows += body["device_epochs"]
            if not (after := body["next_after"]):
                return rows

    mine, theirs = pages("supplier"), pages("other-supplier")
    assert mine and theirs
    assert {r["device_id"] for r in mine}.isdisjoint({r["device_id"] for r in theirs})
    assert [(r["device_id"], r["epoch"]) for r in mine] == sorted(
        (r["device_id"], r["epoch"]) for r in mine
    )
    assert all(r["explanation"].startswith(("Eligible", "Not eligible")) for r in mine)
    # another's device reads exactly like a device that does not exist
    other_device = theirs[0]["device_id"]
    for device in (other_device, "no-such-gpu"):
        body = api.call("GET", f"/v1/supplier/eligibility?device_id={device}", "supplier")
        assert body.status_code == 200 and body.json()["device_epochs"] == []
    assert "owner_id" not in mine[0]


def test_eligibility_is_503_until_the_view_is_built(
    databases, seeded, small_fleet, api: Api
) -> None:  # type: ignore[no-untyped-def]
    empty = make_engine(ingested_copy(databases, seeded, "sqlite", small_fleet))  # no view
    with BackgroundServer(create_app(empty, api.settings, make_verifier(api.settings))) as server:
        response = httpx.get(
            server.url + "/v1/supplier/eligibility",
            headers={"Authorization": f"Bearer {api.tokens['supplier']}"},
        )
    empty.dispose()
    assert response.status_code == 503 and response.headers["retry-after"]


def test_admins_declare_edit_and_dismiss_incidents_and_bad_ones_get_a_4xx(api: Api) -> None:
    body = {**NEW_INCIDENT, "id": "flow-1"}
    made = api.call("POST", "/v1/admin/incidents", "admin", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "confirmed" and made.json()["source"] == "admin"
    assert api.call("POST", "/v1/admin/incidents", "admin", json=body).status_code == 409
    edited = api.call(
        "PATCH", "/v1/admin/incidents/flow-1", "admin", json={"end": "2024-04-26T02:00:00Z"}
    ).json()
    assert edited["end"].startswith("2024-04-26T02:00") and edited["status"] == "confirmed"
    gone = api.call("POST", "/v1/admin/incidents/flow-1/dismiss", "admin").json()
    assert gone["status"] == "dismissed"
    listed = api.call("GET", "/v1/admin/incidents?status=dismissed", "admin").json()
    assert "flow-1" in {i["id"] for i in listed}
    with api.engine.connect() as connection:
        actions = connection.execute(
            text("SELECT action, actor FROM audit_log WHERE subject = 'flow-1' ORDER BY id")
        ).all()
    assert [a for a, _ in actions] == ["incident.declare", "incident.edit", "incident.dismiss"]
    assert {who for _, who in actions} == {"admin.example.org"}
    bad = [
        {**body, "id": "bad-1", "end": body["start"]},  # empty window
        {**body, "id": "bad-2", "scope": {"all": False}},
        {**body, "id": "bad-3", "scope": {"all": True, "device_ids": ["x"]}},
        {**body, "id": "bad-4", "start": "2024-04-26T00:00:00"},  # no time zone
        {**body, "id": "bad 5"},
        {**body, "id": "bad-6", "owner_id": "mallory"},  # no such field
        {**body, "id": "bad-7", "recovery_deadline_s": -1},
    ]
    for payload in bad:
        response = api.call("POST", "/v1/admin/incidents", "admin", json=payload)
        assert response.status_code == 422, (payload, response.status_code)
    for patch in ({}, {"status": "confirmed"}, {"end": "2024-04-25T00:00:00Z"}):
        response = api.call("PATCH", "/v1/admin/incidents/inc-1", "admin", json=patch)
        assert response.status_code == 422, (patch, response.text)
    assert (
        api.call("PATCH", "/v1/admin/incidents/nope", "admin", json={"reason": "x"}).status_code
        == 404
    )
    assert api.call("POST", "/v1/admin/incidents/nope/dismiss", "admin").status_code == 404


def test_the_explorer_never_shows_an_owner(api: Api) -> None:
    body = api.call("GET", f"/v1/explorer/devices/{api.device}", None).json()
    assert set(body) == {"device_id", "gpu_model", "status", "last_seen"}
    assert api.owner not in str(body)
    assert api.call("GET", "/v1/explorer/devices/no-such-gpu", None).status_code == 404


def test_refusals_say_nothing_internal(api: Api) -> None:
    forged = api.tokens["admin"][:-4] + "AAAA"
    response = httpx.get(
        api.url + "/v1/admin/incidents", headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "https://ignition-rewards.dev/problems/unauthorized",
        "title": "A valid bearer token is required",
        "status": 401,
        "detail": "invalid token",
    }
    assert response.headers["www-authenticate"].startswith("Bearer")
    big = httpx.post(
        api.url + "/v1/admin/incidents/inc-1/confirm",
        headers={"Authorization": f"Bearer {api.tokens['admin']}"},
        content=b"x" * 100_000,
    )
    assert big.status_code == 413


INJECTIONS = [
    "' OR '1'='1",
    "x'; DROP TABLE snapshots; --",
    "1; UPDATE device_metadata SET owner_id='mallory'",
    '" OR ""="',
    "owner-00001' --",
    "%27%20OR%201%3D1",
    "gpu-000001\x00",
    "../../etc/passwd",
]
# every string parameter: (method, path template with {x}, who)
STRING_PARAMETERS = [
    ("GET", "/v1/explorer/devices/{x}", None),
    ("GET", "/v1/supplier/devices?after={x}", "supplier"),
    ("GET", "/v1/supplier/rewards/{x}", "supplier"),
    ("GET", "/v1/supplier/eligibility?device_id={x}", "supplier"),
    ("GET", "/v1/supplier/eligibility?after={x}", "supplier"),
    ("GET", "/v1/admin/incidents?status={x}", "admin"),
    ("POST", "/v1/admin/incidents/{x}/confirm", "admin"),
    ("POST", "/v1/admin/incidents/{x}/dismiss", "admin"),
    ("GET", "/v1/admin/devices/{x}/metadata", "admin"),
    ("GET", "/v1/admin/metadata-changes?actor={x}", "admin"),
]


def _counts(engine: Engine) -> dict[str, int]:
    tables = ("device_metadata", "snapshots", "snapshot_payouts", "incidents", "audit_log")
    with engine.connect() as connection:
        return {
            t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()  # noqa: S608
            for t in tables
        }


def test_sql_injection_payloads_get_a_4xx_and_change_nothing(api: Api) -> None:
    before = _counts(api.engine)
    with api.engine.connect() as connection:
        owners = connection.execute(text("SELECT DISTINCT owner_id FROM device_metadata")).all()
    for method, template, who in STRING_PARAMETERS:
        for payload in INJECTIONS:
            response = api.call(method, template.replace("{x}", quote(payload, safe="")), who)
            assert 400 <= response.status_code < 500, (template, payload, response.status_code)
    assert _counts(api.engine) == before
    with api.engine.connect() as connection:
        assert (
            connection.execute(text("SELECT DISTINCT owner_id FROM device_metadata")).all()
            == owners
        )


def test_sql_injection_in_body_fields_is_refused_or_kept_as_plain_text(api: Api) -> None:
    """Identifier fields refuse such payloads (422); free text (a reason) is stored as the
    very text given, through bound parameters, and nothing else changes."""
    before = _counts(api.engine)
    for payload in INJECTIONS:
        for field in ("id",):
            body = {**NEW_INCIDENT, field: payload}
            response = api.call("POST", "/v1/admin/incidents", "admin", json=body)
            assert response.status_code == 422, (field, payload)
        for scope in ({"device_ids": [payload]}, {"agent_version_below": payload}):
            body = {**NEW_INCIDENT, "id": "inj-scope", "scope": scope}
            response = api.call("POST", "/v1/admin/incidents", "admin", json=body)
            assert response.status_code == 422, (scope, response.status_code)
        revert = {**BODIES["/v1/admin/metadata-changes/revert"], "actor": payload}  # type: ignore[dict-item]
        response = api.call("POST", "/v1/admin/metadata-changes/revert", "admin", json=revert)
        assert response.status_code == 422, payload
    assert _counts(api.engine) == before
    for number, payload in enumerate(INJECTIONS):
        body = {**NEW_INCIDENT, "id": f"inj-text-{number}", "reason": payload.replace("\x00", "")}
        made = api.call("POST", "/v1/admin/incidents", "admin", json=body)
        assert made.status_code == 201
        assert made.json()["reason"] == body["reason"]
    after = _counts(api.engine)
    assert after["incidents"] == before["incidents"] + len(INJECTIONS)
    assert after["device_metadata"] == before["device_metadata"]
    assert after["snapshots"] == before["snapshots"]


def test_an_admin_reads_history_and_reverts_one_actors_changes(api: Api) -> None:
    history = api.call("GET", f"/v1/admin/devices/{api.device}/metadata", "admin").json()
    assert history["versions"] and all(v["device_id"] == api.device for v in history["versions"])
    pages, after = [], None
    while True:
        query = "/v1/admin/metadata-changes?actor=registry&limit=25" + (
            f"&after={after}" if after else ""
        )
        page = api.call("GET", query, "admin").json()
        pages += page["versions"]
        if not (after := page["next_after"]):
            break
    ids = [v["id"] for v in pages]
    assert ids == sorted(set(ids)) and {v["actor"] for v in pages} == {"registry"}
    with api.engine.connect() as connection:
        assert (
            len(ids)
            == connection.execute(
                text("SELECT count(*) FROM device_metadata WHERE actor = 'registry'")
            ).scalar()
        )
    refused = api.call(
        "POST",
        "/v1/admin/metadata-changes/revert",
        "admin",
        json={**BODIES["/v1/admin/metadata-changes/revert"], "until": "2024-04-19T00:00:00Z"},  # type: ignore[dict-item]
    )
    assert refused.status_code == 422


PAGED = [
    # (path, who, the list in the body or None for a bare list, key field, cursor parameter)
    ("/v1/admin/incidents", "admin", None, "id", "after"),
    ("/v1/admin/job-runs", "admin", None, "id", "before"),
    ("/v1/admin/alerts", "admin", None, "id", "before"),
    ("/v1/finance/snapshots", "finance", None, "version", "before"),
    ("/v1/supplier/devices", "supplier", "devices", "device_id", "after"),
    ("/v1/admin/metadata-changes", "admin", "versions", "id", "after"),
]


@pytest.mark.parametrize(("path", "who", "field", "key", "cursor"), PAGED)
def test_every_list_pages_by_cursor_without_gaps_or_repeats(
    api: Api, path: str, who: str, field: str | None, key: str, cursor: str
) -> None:
    def items(query: str) -> list[dict[str, object]]:
        body = api.call("GET", f"{path}?{query}", who).json()
        return body if field is None else body[field]

    everything = items("limit=500")
    seen: list[dict[str, object]] = []
    query = "limit=2"
    while page := items(query):
        assert len(page) <= 2
        seen += page
        query = f"limit=2&{cursor}={quote(str(page[-1][key]))}"
    assert [i[key] for i in seen] == [i[key] for i in everything]
    assert api.call("GET", f"{path}?limit=501", who).status_code == 422


def test_the_public_bundle_needs_no_sign_in_is_cacheable_and_names_nobody(api: Api) -> None:
    base = "/v1/explorer/snapshots/v1/public/"
    manifest = api.call("GET", base + "manifest.json", None)
    assert manifest.status_code == 200
    assert manifest.headers["cache-control"].startswith("public")
    files = manifest.json()["files"]
    for name, expected in files.items():
        answer = api.call("GET", base + name, None)
        assert answer.status_code == 200, name
        assert hashlib.sha256(answer.content).hexdigest() == expected["sha256"], name
        assert api.owner not in answer.text and api.other not in answer.text, name
        assert api.device not in answer.text, name
    # nothing of the audit bundle (owners, salts, inputs) is public, by any name
    for name in ("owners.csv", "salts.csv", "fingerprint_parts.parquet", "inputs%2Fowners.parquet",
                 "../audit/salts.csv", "export%2Fsuppliers.csv"):  # fmt: skip
        assert api.call("GET", base + name, None).status_code in (404, 422), name
    assert (
        api.call("GET", "/v1/explorer/snapshots/v9/public/claims.ndjson", None).status_code == 404
    )
