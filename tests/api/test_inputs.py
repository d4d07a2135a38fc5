"""What the API's bodies accept (issue 12, items 14 and 15): an incident covers only known
devices within sane years, and an integer is an integer, not "3600" or true."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import Engine

from rewards.api import schemas
from rewards.api.edge import INCIDENT_BODY_BYTES, MAX_BODY_BYTES
from rewards.api.problems import TYPES
from rewards.api.routes import ROUTERS
from rewards.db.devices import store_devices
from rewards.db.engine import make_engine, unit_of_work
from tests.api.loopback import PROBLEM, Served, served_api

KNOWN = ["gpu-known-1", "gpu-known-2"]


def incident(incident_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": incident_id,
        "start": "2024-04-25T08:05:00Z",
        "end": "2024-04-25T09:05:00Z",
        "recovery_deadline_s": 3600,
        "scope": {"device_ids": KNOWN},
        "reason": "test",
    }
    return {**body, **changes}


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Served]:
    engine: Engine = make_engine(db_url, serving=True)
    at = datetime(2024, 4, 1, tzinfo=UTC)
    records = [
        {"device_id": d, "owner_id": "owner-1", "gpu_model": "H100", "gpu_count": 8,
         "status": "active", "registered_at": at, "updated_at": at}
        for d in KNOWN
    ]  # fmt: skip
    with unit_of_work(engine) as session:
        store_devices(session, records, now=at, actor="registry", source="test")
    with served_api(engine, tmp_path) as served:
        yield served
    engine.dispose()


@pytest.fixture(scope="module")
def strict_api(databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    """The schemas' strictness needs no storage: one SQLite-backed API for those tests."""
    engine = make_engine(databases.fresh("sqlite"), serving=True)
    with served_api(engine, tmp_path_factory.mktemp("strict")) as served:
        yield served
    engine.dispose()


def refused(answer) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body: dict[str, Any] = answer.json()
    assert body["type"] == TYPES["invalid-request"].uri
    return body


def test_an_incident_scope_naming_unknown_devices_is_refused_listing_them(api: Served) -> None:
    scope = {"device_ids": [KNOWN[0], "gpu-ghost-9", "gpu-ghost-1"]}
    post = api.call("POST", "/v1/admin/incidents", json=incident("i-1", scope=scope),
                    headers=api.bearer())  # fmt: skip
    assert refused(post)["unknown_device_ids"] == ["gpu-ghost-1", "gpu-ghost-9"]
    made = api.call("POST", "/v1/admin/incidents", json=incident("i-1"), headers=api.bearer())
    assert made.status_code == 201, made.text
    edit = api.call("PATCH", "/v1/admin/incidents/i-1", json={"scope": scope}, headers=api.bearer())
    assert refused(edit)["unknown_device_ids"] == ["gpu-ghost-1", "gpu-ghost-9"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("1999-12-31T23:00:00Z", "2000-01-01T01:00:00Z"),
        ("2100-12-31T23:00:00Z", "2101-01-01T01:00:00Z"),
    ],
)
def test_an_incident_window_outside_the_sane_years_is_refused(
    api: Served, start: str, end: str
) -> None:
    body = incident("i-2", start=start, end=end)
    assert "2000" in refused(api.call("POST", "/v1/admin/incidents", json=body,
                                      headers=api.bearer()))["detail"]  # fmt: skip
    assert api.call("POST", "/v1/admin/incidents", json=incident("i-2"),
                    headers=api.bearer()).status_code == 201  # fmt: skip
    edit = api.call("PATCH", "/v1/admin/incidents/i-2", json={"start": start, "end": end},
                    headers=api.bearer())  # fmt: skip
    refused(edit)
    edge = {"start": "2000-01-01T00:00:00Z", "end": "2100-12-31T23:59:59Z"}
    assert api.call("PATCH", "/v1/admin/incidents/i-2", json=edge,
                    headers=api.bearer()).status_code == 200  # fmt: skip


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/v1/admin/incidents", "POST", incident("s-1", recovery_deadline_s="3600")),
        ("/v1/admin/incidents", "POST", incident("s-1", recovery_deadline_s=True)),
        ("/v1/admin/incidents", "POST", incident("s-1", recovery_deadline_s=3600.0)),
        ("/v1/admin/incidents", "POST", incident("s-1", start=1714032300)),
        ("/v1/admin/incidents", "POST", incident("s-1", scope={"all": 1})),
        ("/v1/admin/incidents", "POST", incident("s-1", scope={"all": "true"})),
        ("/v1/admin/incidents", "POST", incident("s-1", reason=12)),
        ("/v1/admin/incidents/x-1", "PATCH", {"recovery_deadline_s": "3600"}),
        ("/v1/admin/incidents/x-1", "PATCH", {"recovery_deadline_s": True}),
        ("/v1/admin/snapshots/run", "POST", {"reason": "r", "force": "true"}),
        ("/v1/admin/snapshots/run", "POST", {"reason": "r", "force": 1}),
        ("/v1/admin/metadata-changes/revert", "POST",
         {"actor": "a", "since": 0, "until": "2024-04-25T09:05:00Z", "reason": "r"}),
        ("/v1/admin/snapshots/v1/publish", "POST", {"override_rollback": "yes", "reason": "r"}),
        ("/v1/admin/snapshots/v1/publish", "POST", {"override_rollback": 1, "reason": "r"}),
        ("/v1/admin/snapshots/v1/publish", "POST", {"override_rollback": "true", "reason": "r"}),
        ("/v1/admin/snapshots/v1/publish", "POST", {"override_rollback": True, "reason": 7}),
    ],
)  # fmt: skip
def test_strings_and_booleans_are_not_numbers_in_api_bodies(
    strict_api: Served, path: str, method: str, body: dict[str, Any]
) -> None:
    answer = strict_api.call(method, path, json=body, headers=strict_api.bearer())
    errors = refused(answer)["errors"]
    assert errors and all(isinstance(e["loc"], list) for e in errors)


def _models_in(annotation: object) -> Iterator[type[BaseModel]]:
    """The pydantic models an annotation names, through unions, lists and Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        for field in annotation.model_fields.values():
            yield from _models_in(field.annotation)
    for argument in get_args(annotation):
        yield from _models_in(argument)


def test_every_model_the_api_reads_is_strict() -> None:
    """Every body model of every route, every model nested in one, and every `...In` model
    of rewards/api/schemas.py refuses unknown fields, coercion and NaN (issue 12, item 15):
    a new input model cannot forget STRICT_INPUT."""
    read = {
        model
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for body in route.dependant.body_params
        for model in _models_in(body.field_info.annotation)
    }
    named = {
        value
        for name, value in vars(schemas).items()
        if isinstance(value, type) and issubclass(value, BaseModel) and name.endswith("In")
    }
    assert schemas.PublishIn in read and schemas.ScopeIn in read
    for model in sorted(read | named, key=lambda m: m.__name__):
        config = model.model_config
        assert config.get("strict") is True, f"{model.__name__} is not strict"
        assert config.get("extra") == "forbid", f"{model.__name__} accepts unknown fields"
        assert config.get("allow_inf_nan") is False, f"{model.__name__} accepts NaN"


NOT_IDENTIFIERS = ["owner@example.org", "a" * 129]  # DESIGN 10: '@' and past 128 characters


@pytest.mark.parametrize("bad", NOT_IDENTIFIERS, ids=["at-sign", "129-chars"])
@pytest.mark.parametrize(
    ("method", "path", "role", "body"),
    [
        ("GET", "/v1/explorer/devices/{bad}", "admin", None),
        ("GET", "/v1/admin/devices/{bad}/metadata", "admin", None),
        ("GET", "/v1/admin/metadata-changes?actor={bad}", "admin", None),
        ("GET", "/v1/supplier/devices?after={bad}", "supplier", None),
        ("GET", "/v1/supplier/eligibility?device_id={bad}", "supplier", None),
        ("GET", "/v1/supplier/eligibility?after={bad}/3", "supplier", None),
        ("POST", "/v1/admin/incidents", "admin", incident("n-1", scope={"device_ids": ["{bad}"]})),
        ("PATCH", "/v1/admin/incidents/n-1", "admin", {"scope": {"device_ids": ["{bad}"]}}),
        ("POST", "/v1/admin/metadata-changes/revert", "admin",
         {"actor": "{bad}", "since": "2024-04-25T08:05:00Z", "until": "2024-04-25T09:05:00Z",
          "reason": "r"}),
    ],
)  # fmt: skip
def test_device_ids_and_actors_that_are_not_identifiers_are_422_in_paths_queries_and_bodies(
    strict_api: Served, method: str, path: str, role: str, body: Any, bad: str
) -> None:
    """The identifier rule has one home (rewards/core/identifiers.py): every device id and
    actor the API reads follows it, as the ingest and the tokens do."""
    filled = json.loads(json.dumps(body).replace("{bad}", bad)) if body is not None else None
    headers = strict_api.bearer("caller-1", role)
    answer = strict_api.call(method, path.replace("{bad}", bad), json=filled, headers=headers)
    assert refused(answer)["errors"]


def test_the_largest_valid_incident_body_fits_the_body_cap(db_url: str, tmp_path: Path) -> None:
    """An incident may name 10,000 devices of 128 characters (~1.3 MB of JSON): the
    incident routes' body cap fits the largest valid body, while other routes keep the
    64 KiB one and a body past the incident cap is still 413 (issue 12, items 2 and 14)."""
    engine: Engine = make_engine(db_url, serving=True)
    at = datetime(2024, 4, 1, tzinfo=UTC)
    devices = [f"gpu-{n:05d}-".ljust(128, "x") for n in range(schemas.MAX_SCOPE_DEVICES)]
    records = [
        {"device_id": d, "owner_id": "owner-1", "gpu_model": "H100", "gpu_count": 8,
         "status": "active", "registered_at": at, "updated_at": at}
        for d in devices
    ]  # fmt: skip
    with unit_of_work(engine) as session:
        store_devices(session, records, now=at, actor="registry", source="test")
    body = incident("m-" + "1" * 78, scope={"device_ids": devices}, reason="r" * 500)
    size = len(json.dumps(body))
    assert size > MAX_BODY_BYTES
    with served_api(engine, tmp_path) as api:
        made = api.call("POST", "/v1/admin/incidents", json=body, headers=api.bearer())
        assert made.status_code == 201, made.text[:300]
        edit = {"scope": {"device_ids": devices}, "reason": "s" * 500}
        edited = api.call("PATCH", f"/v1/admin/incidents/{body['id']}", json=edit,
                          headers=api.bearer())  # fmt: skip
        assert edited.status_code == 200, edited.text[:300]
        as_json = {**api.bearer(), "Content-Type": "application/json"}
        padded = json.dumps(body).encode() + b" " * (INCIDENT_BODY_BYTES - size + 1)
        too_big = api.call("POST", "/v1/admin/incidents", content=padded, headers=as_json)
        assert too_big.status_code == 413
        for elsewhere in ("/v1/admin/snapshots/run", f"/v1/admin/incidents/{body['id']}/confirm"):
            answer = api.call("POST", elsewhere, content=b" " * size, headers=as_json)
            assert answer.status_code == 413, elsewhere
    engine.dispose()
