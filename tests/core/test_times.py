"""RFC 3339 parsing: one parser, no silent normalisation, a year window given by the caller."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from rewards.core.times import YearWindow, parse_rfc3339, parse_rfc3339_series, rfc3339_problem

WINDOW = YearWindow(2000, 2100)


@pytest.mark.parametrize(
    "value", ["2016-12-31T23:59:60Z", "2016-12-31T23:59:60.999999Z", "2016-12-31t23:59:60z"]
)
def test_a_leap_second_is_refused_not_moved_to_the_next_second(value: str) -> None:
    assert parse_rfc3339_series(pl.Series([value])).to_list() == [None]
    assert "leap second" in (rfc3339_problem(value) or "")
    with pytest.raises(ValueError, match="leap second"):
        parse_rfc3339(value)


@pytest.mark.parametrize(
    "value", ["0000-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "2101-01-01T00:00:00Z"]
)
def test_a_year_outside_the_window_is_refused(value: str) -> None:
    assert parse_rfc3339_series(pl.Series([value]), years=WINDOW).to_list() == [None]
    assert "outside 2000..2100" in (rfc3339_problem(value, years=WINDOW) or "")


def test_year_zero_never_parses_even_without_a_window() -> None:
    assert parse_rfc3339_series(pl.Series(["0000-01-01T00:00:00Z"])).to_list() == [None]


def test_the_window_bounds_are_inclusive_and_offsets_count_in_utc() -> None:
    values = ["2000-01-01T00:00:00Z", "2100-12-31T23:59:59Z", "2101-01-01T00:30:00+01:00"]
    assert parse_rfc3339_series(pl.Series(values), years=WINDOW).to_list() == [
        datetime(2000, 1, 1, tzinfo=UTC),
        datetime(2100, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2100, 12, 31, 23, 30, tzinfo=UTC),
    ]
    assert rfc3339_problem(values[2], years=WINDOW) is None
