"""The uptime API client against a misbehaving server over real loopback HTTP."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.responses import Response

from rewards.sim.server import BackgroundServer
from rewards.uptime.client import RetryPolicy, UptimeApiError, UptimeClient, decode_page
from rewards.uptime.records import validate_heartbeats
from tests.uptime.hostile import (
    Handler,
    HeaderDripServer,
    drip,
    heartbeat,
    hostile_app,
    json_response,
    page,
)

FAST = RetryPolicy(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.02, max_retry_after_s=5)


def fetch(handler: Handler, *, max_page_bytes: int = 1 << 20, limit: int = 10):  # type: ignore[no-untyped-def]
    app, seen = hostile_app(handler)
    with (
        BackgroundServer(app) as server,
        UptimeClient(server.url, "secret", retry=FAST, max_page_bytes=max_page_bytes) as client,
    ):
        try:
            return client.fetch_page("heartbeats", "0", limit), seen
        except UptimeApiError as exc:
            return exc, seen


def test_server_errors_are_retried_until_a_page_comes() -> None:
    result, seen = fetch(
        lambda r, n: json_response("{}", 500) if n < 3 else json_response(page(heartbeat()))
    )
    assert len(seen) == 3 and len(result.records) == 1 and result.attempts == 3


def test_retry_after_is_honoured() -> None:
    started = time.monotonic()
    result, seen = fetch(
        lambda r, n: (
            json_response("{}", 429, **{"Retry-After": "1"})
            if n == 1
            else json_response(page(heartbeat()))
        )
    )
    assert len(seen) == 2 and result.records
    assert time.monotonic() - started >= 1.0


def test_a_retry_after_beyond_the_limit_ends_the_run_without_waiting() -> None:
    result, seen = fetch(lambda r, n: json_response("{}", 429, **{"Retry-After": "3600"}))
    assert isinstance(result, UptimeApiError) and "3600" in str(result) and len(seen) == 1


def test_truncated_bodies_are_retried_and_a_page_that_keeps_failing_ends_the_run() -> None:
    body = page(heartbeat())
    result, seen = fetch(lambda r, n: json_response(body[: len(body) // 2]))
    assert isinstance(result, UptimeApiError)
    assert "after 4 attempts" in str(result) and "truncated or invalid JSON" in str(result)
    assert len(seen) == 4


def test_a_200_with_an_html_body_is_not_taken_for_data() -> None:
    result, _ = fetch(lambda r, n: Response("<html>maintenance</html>", media_type="text/html"))
    assert isinstance(result, UptimeApiError) and "text/html" in str(result)


def test_an_oversized_body_is_refused_without_retrying() -> None:
    result, seen = fetch(
        lambda r, n: json_response(page(*[heartbeat()] * 200)), max_page_bytes=2_000
    )
    assert isinstance(result, UptimeApiError) and "max_page_bytes" in str(result)
    assert len(seen) == 1


def test_more_records_than_the_limit_is_refused() -> None:
    result, _ = fetch(lambda r, n: json_response(page(*[heartbeat()] * 11)), limit=10)
    assert isinstance(result, UptimeApiError) and "11 records for limit=10" in str(result)


def test_a_refused_token_ends_the_run_at_once_and_says_which_setting() -> None:
    result, seen = fetch(lambda r, n: json_response('{"error":"no"}', 401))
    assert isinstance(result, UptimeApiError) and "REWARDS_UPTIME_API_TOKEN" in str(result)
    assert len(seen) == 1


def test_the_service_token_is_sent_as_a_bearer_token() -> None:
    _, seen = fetch(lambda r, n: json_response(page()))
    assert seen[0].headers["authorization"] == "Bearer secret"


def test_records_orjson_refuses_still_arrive_for_quarantine() -> None:
    body = page(
        heartbeat().replace('"b"', "NaN"),
        heartbeat().replace('"b"', '"\\ud800"'),
        heartbeat().replace('"b"', "123456789012345678901234567890"),
    )
    result, _ = fetch(lambda r, n: json_response(body))
    assert [r["boot_id"] for r in result.records][1:] == ["\ud800", 123456789012345678901234567890]


@pytest.mark.parametrize(
    "shape",
    [
        "[]",
        '{"heartbeats": 5}',
        '{"heartbeats": [], "has_more": 1}',
        '{"heartbeats": [], "has_more": true, "next_cursor": null}',
    ],
)
def test_a_page_of_the_wrong_shape_ends_the_run(shape: str) -> None:
    result, _ = fetch(lambda r, n: json_response(shape))
    assert isinstance(result, UptimeApiError)


def test_a_deeply_nested_page_is_a_page_error_with_its_reason_not_a_crash() -> None:
    deep = '{"heartbeats":[' + "[" * 100_000 + "]" * 100_000 + '],"has_more":false}'
    result, seen = fetch(lambda r, n: json_response(deep))
    assert isinstance(result, UptimeApiError) and "nested" in str(result)
    assert len(seen) == 1  # a page nested past any sane depth is not worth asking again


def test_a_body_that_is_not_utf8_says_so() -> None:
    body = page(heartbeat()).encode().replace(b'"b"', b'"\xff\xfe"')
    result, _ = fetch(lambda r, n: json_response(body))
    assert isinstance(result, UptimeApiError) and "not valid UTF-8" in str(result)


def test_a_record_with_a_duplicate_key_arrives_marked_for_quarantine_not_last_wins() -> None:
    twice = heartbeat("gpu-1").replace('"boot_id"', '"device_id":"gpu-evil","boot_id"')
    result, _ = fetch(lambda r, n: json_response(page(twice, heartbeat("gpu-2"))))
    frame, rejected = validate_heartbeats(
        result.records, now=datetime(2024, 5, 1, tzinfo=UTC), max_skew=timedelta(minutes=5)
    )
    assert frame.get_column("device_id").to_list() == ["gpu-2"]
    assert [r.reason for r in rejected] == [
        "duplicate_key: duplicate key 'device_id' in the record"
    ]
    assert "gpu-evil" in rejected[0].raw and '"gpu-1"' in rejected[0].raw  # both kept


def test_a_page_with_a_duplicate_key_of_its_own_is_a_page_error() -> None:
    body = page(heartbeat()).replace('"has_more":false', '"has_more":false,"has_more":true')
    result, seen = fetch(lambda r, n: json_response(body))
    assert isinstance(result, UptimeApiError) and "duplicate key 'has_more'" in str(result)
    assert len(seen) == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=3), inner, max_size=3)
            ),
            max_leaves=20,
        ).map(lambda doc: json.dumps({"heartbeats": [doc], "has_more": False}).encode()),
    )
)
def test_any_body_is_a_page_or_a_page_error_never_another_exception(body: bytes) -> None:
    try:
        decoded = decode_page("heartbeats", body, limit=10, source="test", attempt=1)
    except UptimeApiError:
        return
    validate_heartbeats(
        decoded.records, now=datetime(2024, 5, 1, tzinfo=UTC), max_skew=timedelta(minutes=5)
    )


def test_a_page_dripping_a_byte_at_a_time_ends_at_the_page_timeout() -> None:
    app, seen = hostile_app(lambda r, n: drip(page(heartbeat()), 0.05))  # ~8 s in all
    started = time.monotonic()
    with (
        BackgroundServer(app) as server,
        UptimeClient(server.url, "secret", retry=FAST, page_timeout_s=1.0) as client,
        pytest.raises(UptimeApiError, match=r"longer than page_timeout_s=1 s"),
    ):
        client.fetch_page("heartbeats", "0", 10)
    assert time.monotonic() - started < 3 and len(seen) == 1


def test_headers_dripping_a_byte_at_a_time_end_at_the_run_deadline() -> None:
    started = time.monotonic()
    with (
        HeaderDripServer(every_s=0.05) as server,
        UptimeClient(server.url, "secret", retry=FAST, page_timeout_s=60) as client,
        pytest.raises(UptimeApiError, match="the run's deadline passed during the page"),
    ):
        client.fetch_page("heartbeats", "0", 10, deadline=time.monotonic() + 1.0)
    assert time.monotonic() - started < 3
