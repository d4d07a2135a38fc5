"""RFC 3339 times, parsed one way everywhere: API records, input files, the CLI.

A time needs a date, a time, optional fractional seconds and a UTC offset (`Z` or ±hh:mm);
`T` and `Z` may be lower case as RFC 3339 allows. Microseconds are the precision kept:
further digits are dropped. A leap second (`:60`) is refused, never moved to the next
second: UTC time in this engine has no leap seconds, and a silent shift would let two
different readings of one instant disagree. A caller may also give a `YearWindow`; times
whose UTC year falls outside it are refused (year 0000 and the like build nonsense
intervals). The window is a plain value: the engine's comes from its settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
_FORM = re.compile(PATTERN)
_LEAP_SECOND = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:60"
_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"


@dataclass(frozen=True)
class YearWindow:
    """The UTC years a time may fall in, both ends included."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.last <= 9999:
            raise ValueError(
                f"year window {self.first}..{self.last}: need 1 <= first <= last <= 9999"
            )

    def problem(self, year: int) -> str | None:
        """None when `year` is inside the window, else the reason in words."""
        if self.first <= year <= self.last:
            return None
        return f"year {year} is outside {self.first}..{self.last}"


DEFAULT_YEARS = YearWindow(2000, 2100)  # the settings' timestamp_min_year..timestamp_max_year


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text)).astimezone(UTC)


def rfc3339_problem(value: str, *, years: YearWindow | None = None) -> str | None:
    """None for a valid RFC 3339 time (inside `years`, when given), else what is wrong
    with it ("has no UTC offset", "is not an RFC 3339 time", "is a leap second …",
    "is an impossible time" or "year N is outside A..B")."""
    text = value.upper()
    if not _FORM.match(text):
        return "has no UTC offset" if _FORM.match(text + "Z") else "is not an RFC 3339 time"
    if re.match(_LEAP_SECOND, text):
        return "is a leap second (:60), refused rather than moved to the next second"
    try:
        moment = _moment(text)
    except (ValueError, OverflowError):
        written = int(text[:4])
        if years is not None and (problem := years.problem(written)):
            return problem
        return "is an impossible time"
    return years.problem(moment.year) if years is not None else None


def parse_rfc3339(value: str, *, years: YearWindow | None = None) -> datetime:
    """The aware UTC datetime `value` spells; ValueError saying what is wrong otherwise."""
    problem = rfc3339_problem(value, years=years)
    if problem:
        raise ValueError(problem)
    return _moment(value.upper())


def parse_rfc3339_series(text: pl.Series, *, years: YearWindow | None = None) -> pl.Series:
    """Vectorized `parse_rfc3339`: UTC microsecond datetimes, null where a value is not a
    valid RFC 3339 time (a leap second, a year outside 1..9999 or outside `years`)."""
    upper = text.str.to_uppercase()
    parsed = upper.str.to_datetime(_FORMAT, time_unit="us", time_zone="UTC", strict=False)
    first, last = (years.first, years.last) if years is not None else (1, 9999)
    valid = (
        upper.str.contains(PATTERN).fill_null(False)
        & ~upper.str.contains(_LEAP_SECOND).fill_null(False)
        & parsed.dt.year().is_between(first, last).fill_null(False)
    )
    return pl.select(pl.when(valid).then(parsed)).to_series().alias(text.name)
