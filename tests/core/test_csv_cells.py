"""CSV injection (OWASP, DESIGN 10): one rule for every CSV the engine writes."""

from __future__ import annotations

import csv
import io

import polars as pl
import pytest

from rewards.core.csv_cells import csv_bytes, neutralised


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("+cmd", "'+cmd"),
        ("=1+2", "'=1+2"),
        ("-cmd", "'-cmd"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("-1", "-1"),
        ("+1.5", "+1.5"),
        ("-0.000003", "-0.000003"),
        ("-1e5", "-1e5"),
        ("owner-1", "owner-1"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_a_cell_starting_a_formula_gets_a_quote_unless_it_is_a_number(
    cell: str, written: str
) -> None:
    frame = pl.DataFrame({"owner_id": [cell], "reward": [-5]})
    assert neutralised(frame).get_column("owner_id").to_list() == [written]
    rows = list(csv.DictReader(io.StringIO(csv_bytes(frame).decode(), newline="")))
    assert rows == [{"owner_id": written, "reward": "-5"}]


def test_neutralising_leaves_the_input_frame_and_nulls_alone() -> None:
    frame = pl.DataFrame({"owner_id": ["=x", None]})
    assert neutralised(frame).get_column("owner_id").to_list() == ["'=x", None]
    assert frame.get_column("owner_id").to_list() == ["=x", None]
