"""Reading eligibility inputs from files: heartbeats or intervals, incidents, devices.

Every problem is an InputError naming the file, the row (1-based, data rows) and the
column, so a person can go and fix it. Nothing here computes anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from rewards.core import (
    DEFAULT_YEARS,
    DEVICES,
    HEARTBEATS,
    INCIDENT_VERSIONS,
    INCIDENTS,
    INTERVALS,
    TIME,
    IncidentScope,
    ScopeError,
    YearWindow,
    identifier_problem,
    not_identifiers,
    parse_duration_us,
    parse_rfc3339,
    parse_rfc3339_series,
    rfc3339_problem,
)

_FORMATS = (".parquet", ".csv", ".ndjson", ".jsonl")


class InputError(ValueError):
    """An input file is unreadable or wrong; the message names file, row and column."""


def _read_table(path: Path, what: str) -> pl.DataFrame:
    if path.suffix not in _FORMATS:
        raise InputError(f"{path}: {what} must be one of {', '.join(_FORMATS)}")
    try:
        if path.suffix == ".parquet":
            return pl.read_parquet(path)
        if path.suffix == ".csv":
            return pl.read_csv(path, infer_schema=False)  # every column as text, checked below
        return pl.read_ndjson(path, infer_schema_length=None)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read it as {path.suffix[1:]}: {exc}") from None


def _first_bad(path: Path, frame: pl.DataFrame, bad: pl.Series, column: str, why: str) -> None:
    if bad.any():
        row = int(bad.arg_true()[0])
        value = frame.get_column(column)[row]
        raise InputError(f"{path}: row {row + 1}, column {column!r}: {why} (got {value!r})")


def _require(path: Path, frame: pl.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r} (has {frame.columns})")


def _text_columns(path: Path, frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    for column in columns:
        if frame.schema[column] != pl.String:
            frame = frame.with_columns(pl.col(column).cast(pl.String, strict=False))
        values = frame.get_column(column)
        _first_bad(path, frame, values.is_null() | (values == ""), column, "empty value")
        _first_bad(path, frame, values.str.contains("\x00", literal=True), column, "NUL character")
    return frame


def _identifiers(path: Path, frame: pl.DataFrame, column: str) -> None:
    """Every value of `column` is an identifier (DESIGN 10: no look-alikes)."""
    bad = not_identifiers(frame.get_column(column))
    if bad.any():
        value = frame.get_column(column)[int(bad.arg_true()[0])]
        why = f"not an identifier: it {identifier_problem(value)}"
        _first_bad(path, frame, bad, column, why)


def _times(
    path: Path,
    frame: pl.DataFrame,
    column: str,
    *,
    nullable: bool = False,
    years: YearWindow = DEFAULT_YEARS,
) -> pl.Series:
    values = frame.get_column(column)
    if isinstance(values.dtype, pl.Datetime):
        # A timestamp column: naive ones are UTC by the format's convention.
        if values.dtype.time_zone is None:
            utc = values.dt.replace_time_zone("UTC").dt.cast_time_unit("us")
        else:
            utc = values.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        year = utc.dt.year()
        bad = ~year.is_between(years.first, years.last).fill_null(True)
        if bad.any():
            why = years.problem(int(year[int(bad.arg_true()[0])])) or ""
            _first_bad(path, frame, bad, column, why)
        return utc
    text = values.cast(pl.String, strict=False)
    parsed = parse_rfc3339_series(text, years=years)
    bad = parsed.is_null()
    if nullable:
        bad = bad & text.is_not_null() & (text != "")
    if bad.any():
        first = text[int(bad.arg_true()[0])]
        problem = rfc3339_problem(first, years=years) if first is not None else None
        why = "not an RFC 3339 time with an offset" + (f": it {problem}" if problem else "")
        _first_bad(path, frame, bad, column, why)
    return parsed


def read_heartbeats(path: Path, *, years: YearWindow = DEFAULT_YEARS) -> pl.DataFrame:
    """A HEARTBEATS frame from Parquet, CSV or NDJSON: device_ids are identifiers, times
    RFC 3339 (no leap second) within `years`."""
    frame = _read_table(path, "heartbeats")
    _require(path, frame, list(HEARTBEATS))
    frame = _text_columns(path, frame, ["device_id", "boot_id", "agent_version"])
    _identifiers(path, frame, "device_id")
    observed = _times(path, frame, "observed_at", years=years)
    return frame.with_columns(observed_at=observed).select(list(HEARTBEATS))


_INTERVAL_TEXT = ["first_boot_id", "first_agent_version", "last_boot_id", "last_agent_version"]


def read_intervals(path: Path, *, years: YearWindow = DEFAULT_YEARS) -> pl.DataFrame:
    """An INTERVALS frame (`rewards intervals export` writes one), sorted by device and
    start: device_ids are identifiers, start before end (UTC timestamps or RFC 3339, within
    `years`), the boot and agent version at each interval's edges given, and a device's
    intervals apart (each starts after the one before it ends)."""
    frame = _read_table(path, "intervals")
    _require(path, frame, list(INTERVALS))
    frame = _text_columns(path, frame, ["device_id", *_INTERVAL_TEXT])
    _identifiers(path, frame, "device_id")
    start = _times(path, frame, "start", years=years)
    frame = frame.with_columns(start=start, end=_times(path, frame, "end", years=years))
    _first_bad(path, frame, frame["end"] <= frame["start"], "end", "not after the start")
    ordered = frame.select(list(INTERVALS)).with_row_index("row").sort("device_id", "start")
    same = ordered["device_id"] == ordered["device_id"].shift(1)
    clash = (same & (ordered["start"] <= ordered["end"].shift(1))).fill_null(False)
    if clash.any():
        row = int(ordered["row"][int(clash.arg_true()[0])])
        raise InputError(
            f"{path}: row {row + 1}, column 'start': the interval overlaps or touches another "
            f"of device {frame['device_id'][row]!r} (got {frame['start'][row]})"
        )
    return ordered.drop("row")


def read_incident_versions(path: Path) -> pl.DataFrame:
    """An INCIDENT_VERSIONS frame: each device's agent_version at a version-scoped
    incident's start (what a snapshot's audit inputs hold), ids checked as identifiers."""
    frame = _read_table(path, "incident versions")
    _require(path, frame, list(INCIDENT_VERSIONS))
    frame = _text_columns(path, frame, list(INCIDENT_VERSIONS))
    _identifiers(path, frame, "device_id")
    return frame.select(list(INCIDENT_VERSIONS))


def read_devices(path: Path, *, years: YearWindow = DEFAULT_YEARS) -> pl.DataFrame:
    """A DEVICES frame: device_id (an identifier), gpu_model, suspended, optional
    valid_from/valid_to (within `years`)."""
    frame = _read_table(path, "devices")
    _require(path, frame, ["device_id", "gpu_model", "suspended"])
    frame = _text_columns(path, frame, ["device_id"])
    _identifiers(path, frame, "device_id")
    suspended = frame.get_column("suspended")
    if suspended.dtype != pl.Boolean:
        text = suspended.cast(pl.String, strict=False).str.to_lowercase()
        _first_bad(
            path,
            frame,
            ~text.is_in(["true", "false"]).fill_null(False),
            "suspended",
            "expected true or false",
        )
        suspended = text == "true"
    bounds = {}
    for column in ("valid_from", "valid_to"):
        bounds[column] = (
            _times(path, frame, column, nullable=True, years=years)
            if column in frame.columns
            else pl.Series(column, [None] * frame.height, dtype=TIME)
        )
    return pl.DataFrame(
        {
            "device_id": frame.get_column("device_id"),
            "gpu_model": frame.get_column("gpu_model").cast(pl.String, strict=False),
            "suspended": suspended,
            **bounds,
        },
        schema=dict(DEVICES),
    )


def _incident(path: Path, index: int, item: Any, years: YearWindow) -> dict[str, Any] | None:
    where = f"{path}: incident {index + 1}"
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object")
    unknown = sorted(
        set(item)
        - {"id", "start", "end", "recovery_deadline", "scope", "status", "reason", "source"}
    )
    if unknown:
        raise InputError(f"{where}: unknown field {unknown[0]!r}")
    if "status" in item and item["status"] != "confirmed":
        return None  # only confirmed incidents count
    if not isinstance(item.get("id"), str) or not item["id"]:
        raise InputError(f"{where}: field 'id' must be a non-empty string")
    where = f"{path}: incident {item['id']!r}"
    moments = {}
    for field in ("start", "end"):
        value = item.get(field)
        if not isinstance(value, str) or (problem := rfc3339_problem(value, years=years)):
            why = problem if isinstance(value, str) else "is not a string"
            raise InputError(
                f"{where}: field {field!r} must be an RFC 3339 time, got {value!r} (it {why})"
            )
        moments[field] = parse_rfc3339(value)
    if moments["end"] <= moments["start"]:
        raise InputError(f"{where}: 'end' must be after 'start'")
    try:
        deadline = parse_duration_us(item.get("recovery_deadline", 0))
    except ValueError as exc:
        raise InputError(f"{where}: field 'recovery_deadline': {exc}") from None
    record = {
        "incident_id": item["id"],
        "start": moments["start"],
        "end": moments["end"],
        "recovery_deadline_us": deadline,
    }
    record.update(parse_scope(where, item.get("scope")))
    return record


def parse_scope(where: str, scope: Any) -> dict[str, Any]:
    """The INCIDENTS scope columns of a scope object (IncidentScope.parse), or InputError
    naming `where`."""
    try:
        return IncidentScope.parse(scope).columns()
    except ScopeError as exc:
        raise InputError(f"{where}: {exc}") from None


def read_incidents(path: Path, *, years: YearWindow = DEFAULT_YEARS) -> pl.DataFrame:
    """Confirmed incidents from a JSON list (entries whose status is not confirmed skipped),
    their start and end RFC 3339 (no leap second) within `years`."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a JSON list of incidents")
    records = [r for i, item in enumerate(items) if (r := _incident(path, i, item, years))]
    ids = [r["incident_id"] for r in records]
    if len(set(ids)) != len(ids):
        raise InputError(f"{path}: incident ids must be unique")
    return pl.DataFrame(records, schema=dict(INCIDENTS))
