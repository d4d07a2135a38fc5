"""Record validation: each kind of bad input gets a reason; good input keeps microseconds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core.times import YearWindow
from rewards.uptime.records import DuplicateKeys, validate_devices, validate_heartbeats

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
        ({"boot_id": "b\x00-1"}, "NUL character"),
        ({"device_id": "gpu\x00-1"}, "may contain only letters"),
        ({"agent_version": "\ud800"}, "lone surrogate"),
        ({"device_id": ""}, "is empty"),
        ({"agent_version": "x" * 201}, "longer than 200"),
        ({"device_id": "x" * 201}, "201 characters long (at most 128)"),
        ({"device_id": 12}, "expected a string, got int"),
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
        "missing_field: missing field 'observed_at'",
        "not_an_object: record is not a JSON object",
        "not_an_object: record is not a JSON object",
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


DEVICE = {
    "device_id": "gpu-1",
    "owner_id": "owner-1",
    "gpu_model": "A100",
    "gpu_count": 1,
    "registered_at": "2024-01-01T00:00:00Z",
    "updated_at": "2024-01-01T00:00:00Z",
    "status": "active",
}
LOOK_ALIKES = [
    pytest.param(" gpu-1", id="padded-left"),
    pytest.param("gpu-1 ", id="padded-right"),
    pytest.param("gpu\u200d-1", id="zero-width-joiner"),
    pytest.param("gpu-1\u202e", id="right-to-left-override"),
    pytest.param("gpu-\u0430", id="cyrillic-a"),
    pytest.param("gpu-\u00e9", id="other-non-ascii"),
    pytest.param("g" * 129, id="too-long"),
    pytest.param("gpu/1", id="other-punctuation"),
]


@pytest.mark.parametrize("value", LOOK_ALIKES)
def test_a_heartbeat_whose_device_id_is_not_an_identifier_is_quarantined_as_bad_identifier(
    value: str,
) -> None:
    frame, rejected = check({**GOOD, "device_id": value})
    assert frame.is_empty()
    assert rejected[0].reason.startswith("bad_identifier: field 'device_id'")


@pytest.mark.parametrize("field", ["device_id", "owner_id", "updated_by"])
@pytest.mark.parametrize("value", LOOK_ALIKES)
def test_a_device_record_whose_identifiers_are_not_identifiers_is_quarantined(
    field: str, value: str
) -> None:
    clean, rejected = validate_devices([{**DEVICE, field: value}])
    assert clean == []
    assert rejected[0].reason.startswith(f"bad_identifier: field {field!r}")


def test_case_variants_of_an_identifier_stay_distinct_devices() -> None:
    clean, rejected = validate_devices([DEVICE, {**DEVICE, "device_id": "GPU-1"}])
    assert rejected == [] and [c["device_id"] for c in clean] == ["gpu-1", "GPU-1"]
    frame, rejected = validate_heartbeats(
        [GOOD, {**GOOD, "device_id": "GPU-1"}], now=NOW, max_skew=timedelta(0)
    )
    assert rejected == [] and frame.get_column("device_id").to_list() == ["gpu-1", "GPU-1"]


@pytest.mark.parametrize(
    ("observed_at", "why"),
    [
        ("2016-12-31T23:59:60Z", "leap second"),
        ("2016-12-31T23:59:60.5Z", "leap second"),
        ("2017-01-01T00:59:60+01:00", "leap second"),
        ("0000-01-01T00:00:00Z", "year 0 is outside 2000..2100"),
        ("1999-12-31T23:59:59Z", "year 1999 is outside 2000..2100"),
    ],
)
def test_leap_seconds_and_years_outside_the_window_are_quarantined_as_bad_timestamp(
    observed_at: str, why: str
) -> None:
    frame, rejected = check({**GOOD, "observed_at": observed_at})
    assert frame.is_empty()
    assert rejected[0].reason.startswith("bad_timestamp: field 'observed_at'")
    assert why in rejected[0].reason


def test_the_year_window_is_a_parameter_and_its_bounds_are_inclusive() -> None:
    window = YearWindow(1990, 2030)
    inside = ["1990-01-01T00:00:00Z", "2030-12-31T23:59:59.999999Z"]
    outside = ["1989-12-31T23:59:59Z", "2031-01-01T00:00:00Z"]
    frame, rejected = validate_heartbeats(
        [{**GOOD, "observed_at": t} for t in inside + outside],
        now=datetime(2040, 1, 1, tzinfo=UTC),
        max_skew=timedelta(0),
        years=window,
    )
    assert frame.height == 2
    assert [r.reason.split(":")[0] for r in rejected] == ["bad_timestamp"] * 2


@pytest.mark.parametrize("field", ["registered_at", "updated_at"])
def test_device_times_outside_the_window_or_on_a_leap_second_are_bad_timestamps(
    field: str,
) -> None:
    for value in ("2016-12-31T23:59:60Z", "0000-01-01T00:00:00Z", "2101-01-01T00:00:00Z"):
        clean, rejected = validate_devices([{**DEVICE, field: value}])
        assert clean == []
        assert rejected[0].reason.startswith(f"bad_timestamp: field {field!r}")


CODED = [
    pytest.param("not_an_object", "text", id="not-an-object"),
    pytest.param("missing_field", {"device_id": "gpu-1"}, id="missing-field"),
    pytest.param("not_a_string", {**GOOD, "boot_id": 1}, id="not-a-string"),
    pytest.param("empty_field", {**GOOD, "agent_version": ""}, id="empty-field"),
    pytest.param("too_long", {**GOOD, "boot_id": "b" * 201}, id="too-long"),
    pytest.param("invalid_unicode", {**GOOD, "boot_id": "\ud800"}, id="invalid-unicode"),
    pytest.param("nul_character", {**GOOD, "boot_id": "b\x00"}, id="nul-character"),
    pytest.param("bad_identifier", {**GOOD, "device_id": "gpu 1"}, id="bad-identifier"),
    pytest.param("bad_timestamp", {**GOOD, "observed_at": "identifier"}, id="bad-timestamp"),
    pytest.param("in_the_future", {**GOOD, "observed_at": "2024-04-25T13:00:00Z"}, id="future"),
]


@pytest.mark.parametrize(("code", "record"), CODED)
def test_every_heartbeat_quarantine_reason_starts_with_its_stable_code(
    code: str, record: object
) -> None:
    _, rejected = check(record)
    assert rejected[0].reason.split(": ")[0] == code


@pytest.mark.parametrize(
    ("code", "change"),
    [
        ("bad_count", {"gpu_count": -1}),
        ("too_long", {"status": "s" * 41}),
        ("too_long", {"gpu_model": "m" * 201}),
        ("not_a_string", {"gpu_model": None}),
        ("bad_identifier", {"owner_id": "@SUM(1+1)"}),
        ("bad_timestamp", {"updated_at": "2024-04-25T08:00:00"}),
    ],
)
def test_every_device_quarantine_reason_starts_with_its_stable_code(
    code: str, change: dict[str, object]
) -> None:
    _, rejected = validate_devices([{**DEVICE, **change}])
    assert rejected[0].reason.split(": ")[0] == code


def test_a_record_or_a_field_naming_a_key_twice_is_a_duplicate_key_by_its_code() -> None:
    twice = DuplicateKeys([("device_id", "a"), ("device_id", "b")])
    _, rejected = check(twice)
    assert rejected[0].reason == "duplicate_key: duplicate key 'device_id' in the record"
    _, rejected = check({**GOOD, "boot_id": DuplicateKeys([("x", 1), ("x", 2)])})
    assert rejected[0].reason.startswith("duplicate_key: field 'boot_id'")


@pytest.mark.parametrize("length", [129, 200, 201, 5_000])
def test_a_heartbeat_device_id_over_128_characters_is_a_bad_identifier_whatever_its_length(
    length: int,
) -> None:
    _, rejected = check({**GOOD, "device_id": "g" * length})
    assert rejected[0].reason.startswith("bad_identifier: field 'device_id'")
    assert "at most 128" in rejected[0].reason


@pytest.mark.parametrize("field", ["device_id", "owner_id", "updated_by"])
def test_a_device_identifier_over_200_characters_is_a_bad_identifier_not_a_long_text(
    field: str,
) -> None:
    _, rejected = validate_devices([{**DEVICE, field: "o" * 201}])
    assert rejected[0].reason.startswith(f"bad_identifier: field {field!r}")


@pytest.mark.parametrize("field", ["boot_id", "agent_version"])
def test_free_text_heartbeat_fields_keep_their_own_limit_of_200_characters(field: str) -> None:
    frame, rejected = check({**GOOD, field: "v" * 200})
    assert frame.height == 1 and rejected == []
    _, rejected = check({**GOOD, field: "v" * 201})
    assert rejected[0].reason.startswith(f"too_long: field {field!r}")


texts = st.sampled_from(
    ["gpu-1", "GPU-1", "gpu-2", "", "a" * 129, "b" * 201, "gpu 1", "gpu\x00", "gpu-\u0456",
     "\ud800", "0.9.9", "2024-04-25T08:00:00Z", "2024-04-25T08:00:00.5+02:00",
     "2024-04-25T23:59:60Z", "2031-01-01T00:00:00Z", "yesterday"]
)  # fmt: skip
values = st.one_of(texts, st.none(), st.integers(), st.just(DuplicateKeys([("x", 1), ("x", 2)])))
fields = st.sampled_from(["device_id", "observed_at", "boot_id", "agent_version"])
records = st.one_of(
    st.fixed_dictionaries(
        {"device_id": texts, "observed_at": texts, "boot_id": texts, "agent_version": texts}
    ),
    st.dictionaries(fields, values, max_size=4),
    st.just(GOOD),
)


@settings(max_examples=300, deadline=None)
@given(page=st.lists(records, max_size=12))
def test_a_page_checked_column_wise_equals_one_checked_record_by_record(page: list[object]) -> None:
    """The column-wise fast path (a page where every record is well-formed) accepts and
    refuses exactly what the per-record path does: a non-record appended forces that path."""
    fast, fast_refused = validate_heartbeats(page, now=NOW, max_skew=timedelta(minutes=5))
    slow, slow_refused = validate_heartbeats([*page, 42], now=NOW, max_skew=timedelta(minutes=5))
    assert fast.equals(slow)
    assert sorted(fast_refused, key=repr) == sorted(
        [r for r in slow_refused if r.raw != "42"], key=repr
    )
