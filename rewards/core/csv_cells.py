"""CSV injection (OWASP; DESIGN 10): the one rule for every CSV cell the engine writes.

A spreadsheet runs a cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return
as a formula. Such a cell gets a leading `'` (shown as text, never run), unless the whole
cell is a number such as `-1` or `+2.5e3`, which stays as it is. Only CSV is touched:
Parquet and the Merkle leaves keep the raw value, and exports say so in their manifest.
"""

from __future__ import annotations

import io

import polars as pl

CSV_INJECTION = "neutralised (OWASP)"  # what an export's manifest says of its CSV cells

_FORMULA_START = r"^[=+\-@\t\r]"
_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with every text cell that could start a formula prefixed by `'`; numbers,
    other columns and nulls unchanged. The input frame is not modified."""
    text = [name for name, dtype in frame.schema.items() if dtype in (pl.String, pl.Categorical)]
    return frame.with_columns(
        pl.when(
            pl.col(name).cast(pl.String).str.contains(_FORMULA_START)
            & ~pl.col(name).cast(pl.String).str.contains(_NUMBER)
        )
        .then(pl.lit("'") + pl.col(name).cast(pl.String))
        .otherwise(pl.col(name).cast(pl.String))
        .alias(name)
        for name in text
    )


def csv_bytes(frame: pl.DataFrame) -> bytes:
    """`frame` as CSV (header, comma, UTF-8) with its cells `neutralised`."""
    buffer = io.BytesIO()
    neutralised(frame).write_csv(buffer)
    return buffer.getvalue()
