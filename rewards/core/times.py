"""RFC 3339 times, parsed one way everywhere: API records, input files, the CLI.

A time needs a date, a time, optional fractional seconds and a UTC offset (`Z` or ±hh:mm);
`T` and `Z` may be lower case as RFC 3339 allows. Microseconds are the precision kept:
further digits are dropped.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import polars as pl

PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
_FORM = re.compile(PATTERN)
_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"


def rfc3339_problem(value: str) -> str | None:
    """None for a valid RFC 3339 time, else what is wrong with it ("has no UTC offset",
    "is not an RFC 3339 time" or "is an impossible time")."""
    text = value.upper()
    if not _FORM.match(text):
        return "has no UTC offset" if _FORM.match(text + "Z") else "is not an RFC 3339 time"
    try:
        datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text))
    except ValueError:
        return "is an impossible time"
    return None


def parse_rfc3339(value: str) -> datetime:
    """The aware UTC datetime `value` spells; ValueError saying what is wrong otherwise."""
    problem = rfc3339_problem(value)
    if problem:
        raise ValueError(problem)
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value.upper())).astimezone(UTC)


def parse_rfc3339_series(text: pl.Series) -> pl.Series:
    """Vectorized `parse_rfc3339`: UTC microsecond datetimes, null where a value is not a
    valid RFC 3339 time."""
    upper = text.str.to_uppercase()
    parsed = upper.str.to_datetime(_FORMAT, time_unit="us", time_zone="UTC", strict=False)
    valid = upper.str.contains(PATTERN).fill_null(False)
    return pl.select(pl.when(valid).then(parsed)).to_series().alias(text.name)
