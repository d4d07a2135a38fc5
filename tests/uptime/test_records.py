"""Record validation: each kind of bad input gets a reason; good input keeps microseconds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from rewards.uptime.records import validate_devices, validate_heartbeats

NOW = datetime(2024, 4, 25, 12, tzinfo=UTC)
GOOD = {
    "device_id": "gpu-1",
    "observed_at": "2024-04-25T08:00:00.123456Z",
    "boot_id": "b",
    "agent_version": "0.9.9",
}


def check(record: object):  # type: ignore[no-untyped-def]
    return validate_heartbeats([record], now=NOW, max_skew=timedelta(minutes=5))


def test_a_good_heartbeat_keeps_microseconds_and_converts_offsets_to_utc() -> None:
    frame, rejected = check({**GOOD, "observed_at": "2024-04-25T10:00:00.123456+02:00"})
    assert rejected == []
    assert frame.get_column("observed_at").to_list() == [
        datetime(2024, 4, 25, 8, 0, 0, 123456, tzinfo=UTC)
    ]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"boot_id": None}, "field 'boot_id' must be a string, got null"),
        ({"device_id": "gpu\x00-1"}, "NUL character"),
        ({"agent_version": "\ud800"}, "lone surrogate"),
        ({"device_id": ""}, "is empty"),
        ({"device_id": "x" * 201}, "longer than 200"),
        ({"device_id": 12}, "must be a string, got int"),
        ({"boot_id": 2**70}, "must be a string, got int"),
        ({"agent_version": float("nan")}, "got NaN"),
        ({"observed_at": "2024-04-25T08:00:00"}, "no UTC offset"),
        ({"observed_at": "2024-02-30T08:00:00Z"}, "impossible time"),
        ({"observed_at": "25/04/2024 08:00"}, "not an RFC 3339 time"),
        ({"observed_at": "2024-04-25T12:06:00Z"}, "360 s ahead of the engine clock"),
    ],
)
def test_bad_heartbeats_are_quarantined_with_a_reason(
    change: dict[str, object], reason: str
) -> None:
    frame, rejected = check({**GOOD, **change})
    assert frame.is_empty()
    assert len(rejected) == 1 and reason in rejected[0].reason
    json.loads(rejected[0].raw)  # the raw record is stored as valid ASCII JSON
    assert rejected[0].raw.isascii()


def test_a_missing_field_and_a_non_object_are_quarantined() -> None:
    _, rejected = validate_heartbeats(
        [{"device_id": "x"}, "text", [1]], now=NOW, max_skew=timedelta(0)
    )
    assert [r.reason for r in rejected] == [
        "missing field 'observed_at'",
        "record is not a JSON object",
        "record is not a JSON object",
    ]


def test_one_bad_record_does_not_hold_back_the_rest_of_the_page() -> None:
    frame, rejected = validate_heartbeats(
        [GOOD, {**GOOD, "boot_id": 1}, GOOD], now=NOW, max_skew=timedelta(0)
    )
    assert frame.height == 2 and len(rejected) == 1


def test_device_counts_beyond_64_bits_are_refused() -> None:
    record = {
        "device_id": "gpu-1",
        "owner_id": "o",
        "gpu_model": "A100",
        "gpu_count": 2**64,
        "registered_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "status": "active",
    }
    clean, rejected = validate_devices([record, {**record, "gpu_count": 4}])
    assert [c["gpu_count"] for c in clean] == [4]
    assert "2^63-1" in rejected[0].reason


def test_lower_case_t_and_z_are_rfc_3339_too() -> None:
    frame, rejected = check({**GOOD, "observed_at": "2024-04-25t08:00:00.123456z"})
    assert rejected == []
    assert frame.get_column("observed_at").to_list() == [
        datetime(2024, 4, 25, 8, 0, 0, 123456, tzinfo=UTC)
    ]
