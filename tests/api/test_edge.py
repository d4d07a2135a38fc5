"""The API's edge over real HTTP (issue 12, items 2, 4, 5, 8): bodies are capped while they
stream and not read at all without a valid token; odd JSON gets a 4xx; forwarded addresses
count only from trusted proxies; every error is an RFC 9457 problem document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from rewards.api.problems import TYPES
from rewards.db.engine import make_engine
from tests.api.loopback import (
    PROBLEM,
    Served,
    inside_one_rate_window,
    served_api,
    stream_chunked,
)

INCIDENT = {
    "id": "edge-1",
    "start": "2024-04-25T08:05:00Z",
    "end": "2024-04-25T09:05:00Z",
    "recovery_deadline_s": 3600,
    "scope": {"all": True},
    "reason": "test",
}


@pytest.fixture
def sqlite_engine(databases, tmp_path: Path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = make_engine(databases.fresh("sqlite"), serving=True)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def api(databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    """One served API for the module's tests that only read or refuse (one write: edge-1)."""

    def boom(app: FastAPI) -> None:
        @app.get("/v1/explorer/boom")
        def explode() -> None:
            raise RuntimeError("secret detail: password=hunter2")

    engine = make_engine(databases.fresh("sqlite"), serving=True)
    with served_api(engine, tmp_path_factory.mktemp("edge"), boom) as served:
        yield served
    engine.dispose()


def assert_problem(response, status: int, slug: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == TYPES[slug].uri and body["status"] == status and body["title"]
    assert "Traceback" not in response.text
    return dict(body)


def test_a_chunked_body_without_a_token_is_refused_before_any_of_it_is_read(
    api: Served,
) -> None:
    status, sent = stream_chunked(api.url, "/v1/admin/incidents", {}, budget=16 * 2**20)
    assert status == 401
    assert sent < 2 * 2**20, f"the server read {sent} bytes before refusing"
    bad = {"Authorization": "Bearer not.a.token"}
    status, sent = stream_chunked(api.url, "/v1/admin/incidents", bad, budget=16 * 2**20)
    assert status == 401 and sent < 2 * 2**20


def test_a_chunked_body_past_the_cap_is_refused_while_it_streams(api: Served) -> None:
    status, sent = stream_chunked(api.url, "/v1/admin/incidents", api.bearer(), budget=16 * 2**20)
    assert status == 413
    assert sent < 4 * 2**20, f"the server took {sent} bytes before refusing"
    big = api.call("POST", "/v1/admin/snapshots/run", content=b"x" * 70_000, headers=api.bearer())
    assert_problem(big, 413, "content-too-large")


def test_errors_are_problem_documents_with_a_stable_type(api: Served) -> None:
    assert_problem(api.call("GET", "/v1/me"), 401, "unauthorized")
    supplier = api.bearer("owner-1", "supplier")
    assert_problem(api.call("GET", "/v1/admin/incidents", headers=supplier), 403, "forbidden")
    assert_problem(api.call("GET", "/v1/nowhere"), 404, "not-found")
    assert_problem(api.call("DELETE", "/healthz"), 405, "method-not-allowed")
    assert_problem(api.call("GET", "/v1/explorer/devices/no-such-device"), 404, "not-found")
    invalid = assert_problem(
        api.call("POST", "/v1/admin/incidents", json={"id": "x"}, headers=api.bearer()),
        422,
        "invalid-request",
    )
    assert isinstance(invalid["errors"], list) and invalid["errors"]
    assert api.call("POST", "/v1/admin/incidents", json=INCIDENT, headers=api.bearer()).is_success
    taken = api.call("POST", "/v1/admin/incidents", json=INCIDENT, headers=api.bearer())
    assert_problem(taken, 409, "conflict")
    crash = assert_problem(api.call("GET", "/v1/explorer/boom"), 500, "internal-error")
    assert "hunter2" not in json.dumps(crash)


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/admin/incidents", "POST"),
        ("/v1/admin/incidents/edge-1", "PATCH"),
        ("/v1/admin/snapshots/run", "POST"),
        ("/v1/admin/metadata-changes/revert", "POST"),
    ],
)
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinity_in_a_json_body_get_a_4xx_problem(
    api: Served, path: str, method: str, constant: str
) -> None:
    for body in (
        '{"recovery_deadline_s": ' + constant + "}",
        '{"reason": ' + constant + ', "force": ' + constant + "}",
        "[" + constant + "]",
        constant,
    ):
        answer = api.call(
            method, path, content=body, headers={**api.bearer(), "Content-Type": "application/json"}
        )
        assert 400 <= answer.status_code < 500, (body, answer.status_code, answer.text)
        assert answer.headers["content-type"] == PROBLEM


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([float("nan"), float("inf"), float("-inf")])
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def test_any_body_to_a_write_route_gets_a_4xx(api: Served) -> None:
    headers = {**api.bearer(), "Content-Type": "application/json"}
    fields = st.fixed_dictionaries({}, optional={k: JSONISH for k in INCIDENT})

    @given(
        body=st.one_of(
            fields.map(lambda d: json.dumps(d, allow_nan=True).encode()),
            JSONISH.map(lambda v: json.dumps(v, allow_nan=True).encode()),
            st.binary(max_size=200),
        ),
        path=st.sampled_from(
            ["/v1/admin/incidents", "/v1/admin/incidents/edge-1", "/v1/admin/snapshots/run"]
        ),
    )
    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def four_hundreds(body: bytes, path: str) -> None:
        method = "PATCH" if path.endswith("edge-1") else "POST"
        answer = api.call(method, path, content=body, headers=headers)
        assert 400 <= answer.status_code < 500, (body, answer.status_code, answer.text[:200])

    four_hundreds()


def test_rotating_x_forwarded_for_does_not_escape_the_address_limit(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with served_api(sqlite_engine, tmp_path, rate_limit_per_ip="5/minute") as api:
        inside_one_rate_window()
        statuses = [
            api.call("GET", "/healthz", headers={
                "X-Forwarded-For": f"203.0.113.{i}", "Forwarded": f"for=198.51.100.{i}"
            }).status_code
            for i in range(8)
        ]  # fmt: skip
    assert statuses == [200] * 5 + [429] * 3


def test_forwarded_addresses_count_only_from_a_trusted_proxy(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with served_api(
        sqlite_engine, tmp_path, rate_limit_per_ip="2/minute", trusted_proxies=["127.0.0.0/8"]
    ) as api:
        inside_one_rate_window()

        def status(**headers: str) -> int:
            return api.call("GET", "/healthz", headers=headers).status_code

        # behind the proxy each client has its own allowance ...
        assert [status(**{"X-Forwarded-For": "203.0.113.7"}) for _ in range(3)] == [200, 200, 429]
        assert status(**{"X-Forwarded-For": "203.0.113.8"}) == 200
        # ... the address the proxy saw is the last one it added, not what the client wrote
        spoofed = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
        assert status(**spoofed) == 429


def test_behind_a_proxy_that_writes_x_forwarded_for_a_client_sent_forwarded_is_ignored(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """nginx's default appends X-Forwarded-For and passes a client's own `Forwarded`
    through untouched: rotating it must not escape the limit (issue 12, item 5)."""
    with served_api(
        sqlite_engine, tmp_path, rate_limit_per_ip="3/minute", trusted_proxies=["127.0.0.0/8"]
    ) as api:
        inside_one_rate_window()
        statuses = [
            api.call("GET", "/healthz", headers={
                "X-Forwarded-For": "203.0.113.7", "Forwarded": f"for=198.51.100.{i}"
            }).status_code
            for i in range(5)
        ]  # fmt: skip
    assert statuses == [200] * 3 + [429] * 2


def test_behind_a_proxy_that_writes_forwarded_a_client_sent_x_forwarded_for_is_ignored(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with served_api(
        sqlite_engine, tmp_path, rate_limit_per_ip="2/minute", trusted_proxies=["127.0.0.0/8"],
        trusted_proxy_header="forwarded",
    ) as api:  # fmt: skip
        inside_one_rate_window()

        def status(**headers: str) -> int:
            return api.call("GET", "/healthz", headers=headers).status_code

        rotating = [
            status(Forwarded='for="198.51.100.1:4711";proto=https',
                   **{"X-Forwarded-For": f"203.0.113.{i}"})
            for i in range(3)
        ]  # fmt: skip
        assert rotating == [200, 200, 429]
        assert status(Forwarded="for=198.51.100.2") == 200  # another client of the proxy
        assert status(Forwarded='for="[2001:db8::5]:80"') == 200
