"""Validation of uptime API records: good ones become frames, bad ones get a reason.

Nothing here raises on bad input: each record is either accepted or rejected with the
reason a person would need to chase it with the API's owners. Every reason reads
`code: detail`, the code one of REASON_CODES, so an operator (and the ingest metrics)
count by the code, never by words of the detail, which names the record's values. Among
them `bad_identifier` (DESIGN 10: device_id, owner_id and actors match IDENTIFIER_PATTERN,
so look-alikes never become separate devices or suppliers) and `bad_timestamp` (a time
that does not parse, a leap second, or a year outside the configured window).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from rewards.core import (
    DEFAULT_YEARS,
    HEARTBEATS,
    YearWindow,
    identifier_problem,
    not_identifiers,
    parse_rfc3339,
    parse_rfc3339_series,
)

# Identifiers have one rule and one limit (128, rewards.core.identifiers); this limit is
# only for free-text fields that are not identifiers: boot_id, agent_version, gpu_model.
MAX_TEXT = 200
MAX_STATUS = 40
MAX_INT = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEARTBEAT_FIELDS = ("device_id", "observed_at", "boot_id", "agent_version")
_HEARTBEAT_TEXTS = ("observed_at", "boot_id", "agent_version")

# The stable codes a quarantine reason starts with, the one home of the kinds of reason.
BAD_COUNT = "bad_count"  # gpu_count not an integer in 0..2^63-1
BAD_IDENTIFIER = "bad_identifier"  # device_id, owner_id or updated_by not an identifier
BAD_TIMESTAMP = "bad_timestamp"  # not RFC 3339, impossible, a leap second, outside the years
DUPLICATE_KEY = "duplicate_key"  # a JSON object naming a key twice
EMPTY_FIELD = "empty_field"
IN_THE_FUTURE = "in_the_future"  # observed_at later than the engine clock allows
INVALID_UNICODE = "invalid_unicode"  # a lone surrogate
MISSING_FIELD = "missing_field"
NOT_AN_OBJECT = "not_an_object"  # the record is not a JSON object
NOT_A_STRING = "not_a_string"
NUL_CHARACTER = "nul_character"
TOO_LONG = "too_long"  # a free-text field past MAX_TEXT, a status past MAX_STATUS
REASON_CODES = frozenset(
    {
        BAD_COUNT,
        BAD_IDENTIFIER,
        BAD_TIMESTAMP,
        DUPLICATE_KEY,
        EMPTY_FIELD,
        IN_THE_FUTURE,
        INVALID_UNICODE,
        MISSING_FIELD,
        NOT_AN_OBJECT,
        NOT_A_STRING,
        NUL_CHARACTER,
        TOO_LONG,
    }
)
OTHER = "other"  # what reason_code says of a reason that starts with no known code


def reason_code(reason: str) -> str:
    """The code `reason` starts with (one of REASON_CODES), or "other": never a word of
    its detail, so counting by it keeps the number of kinds small."""
    code, colon, _ = reason.partition(": ")
    return code if colon and code in REASON_CODES else OTHER


def _reason(code: str, detail: str) -> str:
    return f"{code}: {detail}"


class DuplicateKeys(list[tuple[str, Any]]):
    """A JSON object that named a key more than once, kept as its (key, value) pairs in
    order: refused with its reason rather than letting the last value win."""

    @property
    def repeated(self) -> str:
        """The first key named twice."""
        seen: set[str] = set()
        for key, _ in self:
            if key in seen:
                return key
            seen.add(key)
        return ""


@dataclass(frozen=True)
class Rejected:
    """A refused record: its raw form as safe ASCII JSON, and why it was refused."""

    raw: str
    reason: str


def raw_text(record: Any) -> str:
    """The record as ASCII JSON: NULs, lone surrogates and NaN survive as escapes/literals."""
    try:
        return json.dumps(record, ensure_ascii=True, sort_keys=True, default=repr)[:10_000]
    except RecursionError:
        return '"(a value nested too deeply to show)"'
    except (TypeError, ValueError):
        return repr(record)[:10_000]


def _not_a_string(name: str, value: Any) -> str:
    if isinstance(value, DuplicateKeys):
        return _reason(
            DUPLICATE_KEY, f"field {name!r} is an object with duplicate key {value.repeated!r}"
        )
    kind = "null" if value is None else type(value).__name__
    if isinstance(value, float) and math.isnan(value):
        kind = "NaN"
    return _reason(NOT_A_STRING, f"field {name!r} must be a string, got {kind}")


def _text_problem(name: str, value: Any, *, longest: int = MAX_TEXT) -> str | None:
    """Why free-text field `name` (not an identifier) is refused, or None."""
    if not isinstance(value, str):
        return _not_a_string(name, value)
    if not value:
        return _reason(EMPTY_FIELD, f"field {name!r} is empty")
    if len(value) > longest:
        return _reason(TOO_LONG, f"field {name!r} is longer than {longest} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return _reason(
                INVALID_UNICODE, f"field {name!r} contains a lone surrogate (invalid Unicode)"
            )
    if "\x00" in value:
        return _reason(NUL_CHARACTER, f"field {name!r} contains a NUL character")
    return None


def _id_problem(name: str, value: Any) -> str | None:
    """Why identifier field `name` is refused (the identifier rule alone), or None."""
    if isinstance(value, DuplicateKeys):
        return _not_a_string(name, value)
    problem = identifier_problem(value)
    return _reason(BAD_IDENTIFIER, f"field {name!r} {problem}") if problem else None


def _not_a_record(value: Any) -> str:
    if isinstance(value, DuplicateKeys):
        return _reason(DUPLICATE_KEY, f"duplicate key {value.repeated!r} in the record")
    return _reason(NOT_AN_OBJECT, "record is not a JSON object")


def parse_time(name: str, value: Any, *, years: YearWindow | None = None) -> datetime | str:
    """An aware UTC datetime from an RFC 3339 string (inside `years`, when given), or the
    reason it is not one."""
    if not isinstance(value, str):
        return f"field {name!r} must be an RFC 3339 string"
    try:
        return parse_rfc3339(value, years=years)
    except ValueError as problem:
        return f"field {name!r} {problem}: {value[:40]!r}"


def validate_heartbeats(
    records: list[Any],
    *,
    now: datetime,
    max_skew: timedelta,
    years: YearWindow = DEFAULT_YEARS,
) -> tuple[pl.DataFrame, list[Rejected]]:
    """Split `records` into a HEARTBEATS frame and rejections (DESIGN 4.1, issue 2 item 5).

    A heartbeat needs a device_id that is an identifier (DESIGN 10), a boot_id and an
    agent_version of 1 to MAX_TEXT characters without NUL or invalid Unicode, and an RFC
    3339 observed_at with an offset, a possible date that is no leap second, in `years`,
    and no later than `now + max_skew`. Each rejection's reason starts with its code.
    """
    frame = _clean_page(records)
    if frame is not None:  # the usual page: every record well-formed, checked column-wise
        return _timed(frame, records, [], now=now, max_skew=max_skew, years=years)
    rejected: list[Rejected] = []
    cols: dict[str, list[str]] = {f: [] for f in _HEARTBEAT_FIELDS}
    kept: list[Any] = []
    for record in records:
        if type(record) is not dict:
            rejected.append(Rejected(raw_text(record), _not_a_record(record)))
            continue
        missing = [name for name in _HEARTBEAT_FIELDS if name not in record]
        problem: str | None
        if missing:
            problem = _reason(MISSING_FIELD, f"missing field {missing[0]!r}")
        else:
            problem = _id_problem("device_id", record["device_id"])
        for name in _HEARTBEAT_TEXTS:  # observed_at too: it must be a clean string to parse
            problem = problem or _text_problem(name, record[name])
        if problem:
            rejected.append(Rejected(raw_text(record), problem))
            continue
        for name in _HEARTBEAT_FIELDS:
            cols[name].append(record[name])
        kept.append(record)
    frame = pl.DataFrame(cols, schema=dict.fromkeys(_HEARTBEAT_FIELDS, pl.String))
    return _timed(frame, kept, rejected, now=now, max_skew=max_skew, years=years)


def _clean_page(records: list[Any]) -> pl.DataFrame | None:
    """The page's heartbeats as a frame of strings when every record passes the per-record
    checks of `validate_heartbeats` (before its time checks), found column by column
    instead of record by record (the per-record loop was a third of the ingest's Python
    time at fleet size); None when any record might not, so the caller takes the
    per-record path for exact reasons. It never accepts what that path refuses."""
    if not all(type(record) is dict for record in records):
        return None
    try:
        cols = {f: [record[f] for record in records] for f in _HEARTBEAT_FIELDS}
        if not all(type(v) is str for values in cols.values() for v in values):
            return None
        frame = pl.DataFrame(cols, schema=dict.fromkeys(_HEARTBEAT_FIELDS, pl.String))
    except (KeyError, UnicodeEncodeError, pl.exceptions.PolarsError):
        return None  # a missing field, or a lone surrogate (it cannot be a polars string)
    refused = not_identifiers(frame.get_column("device_id")).any()
    for name in _HEARTBEAT_TEXTS:
        text = frame.get_column(name)
        lengths = text.str.len_chars()
        nul = text.str.contains("\x00", literal=True).any()
        refused = refused or nul or ((lengths < 1) | (lengths > MAX_TEXT)).any()
    return None if refused else frame


def _timed(
    frame: pl.DataFrame,
    kept: list[Any],
    rejected: list[Rejected],
    *,
    now: datetime,
    max_skew: timedelta,
    years: YearWindow,
) -> tuple[pl.DataFrame, list[Rejected]]:
    """The time checks of `validate_heartbeats` on the records that passed the others
    (`frame`, from `kept`), adding the refused to `rejected`."""
    parsed = parse_rfc3339_series(frame.get_column("observed_at"), years=years)
    good = (parsed <= now + max_skew).fill_null(False)
    if not good.all():
        for index in (~good).arg_true().to_list():
            record = kept[index]
            moment = parse_time("observed_at", record["observed_at"], years=years)
            if isinstance(moment, str):
                reason = _reason(BAD_TIMESTAMP, moment)
            else:
                ahead = (moment - now).total_seconds()
                reason = _reason(
                    IN_THE_FUTURE,
                    f"observed_at is {ahead:.0f} s ahead of the engine clock "
                    f"(max_clock_skew_s={max_skew.total_seconds():.0f})",
                )
            rejected.append(Rejected(raw_text(record), reason))
    out = frame.with_columns(observed_at=parsed).filter(good).select(list(HEARTBEATS))
    return out, rejected


DEVICE_FIELDS = ("device_id", "owner_id", "gpu_model", "status")
_DEVICE_IDENTIFIERS = ("device_id", "owner_id")


def _first_problem(record: dict[str, Any]) -> str | None:
    for name in (*DEVICE_FIELDS, "gpu_count", "registered_at", "updated_at"):
        if name not in record:
            return _reason(MISSING_FIELD, f"missing field {name!r}")
    for name in _DEVICE_IDENTIFIERS:
        problem = _id_problem(name, record[name])
        if problem:
            return problem
    return _text_problem("gpu_model", record["gpu_model"]) or _text_problem(
        "status", record["status"], longest=MAX_STATUS
    )


def validate_devices(
    records: list[Any], *, years: YearWindow = DEFAULT_YEARS
) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Device registry records as clean dicts with aware datetimes, and rejections.

    device_id, owner_id and updated_by (the actor, when given) must be identifiers
    (DESIGN 10); registered_at and updated_at RFC 3339 times, no leap second, in `years`.
    """
    rejected: list[Rejected] = []
    clean: list[dict[str, Any]] = []
    for record in records:
        if type(record) is not dict:
            rejected.append(Rejected(raw_text(record), _not_a_record(record)))
            continue
        problem = _first_problem(record)
        count = record.get("gpu_count")
        if problem is None and (type(count) is not int or not 0 <= count <= MAX_INT):
            problem = _reason(BAD_COUNT, "field 'gpu_count' must be an integer within 0..2^63-1")
        by = record.get("updated_by")
        if problem is None and by is not None:
            problem = _id_problem("updated_by", by)
        times: dict[str, datetime] = {}
        for name in ("registered_at", "updated_at"):
            if problem is None:
                moment = parse_time(name, record[name], years=years)
                if isinstance(moment, str):
                    problem = _reason(BAD_TIMESTAMP, moment)
                else:
                    times[name] = moment
        if problem:
            rejected.append(Rejected(raw_text(record), problem))
            continue
        clean.append(
            {
                **{n: record[n] for n in DEVICE_FIELDS},
                "gpu_count": count,
                "updated_by": by,  # who made the change at the source, when it says
                **times,
            }
        )
    return clean, rejected
