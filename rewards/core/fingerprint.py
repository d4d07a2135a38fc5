"""The fingerprint of a snapshot's frozen inputs (DESIGN 5, 9).

A snapshot records the SHA-256 of the inputs it was computed from (intervals, confirmed
incidents, incident versions, device metadata, ownership), so a rerun on unchanged inputs
is found and an audit bundle can be checked against the snapshot. The hash depends only on the
frames' names, columns, types and rows, never on row order or where the frames came from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import polars as pl


def _column_bytes(series: pl.Series) -> list[bytes]:
    nulls = series.is_null().to_numpy().tobytes()
    if series.dtype == pl.String:
        filled = series.fill_null("")
        lengths = filled.str.len_bytes().cast(pl.UInt64).to_numpy().tobytes()
        return [nulls, lengths, "".join(filled.to_list()).encode("utf-8")]
    if series.dtype == pl.List(pl.String):
        return _column_bytes(series.list.sort().list.join("\x1f"))
    if series.dtype == pl.Boolean:
        return [nulls, series.fill_null(False).to_numpy().tobytes()]
    numbers = series.to_physical().cast(pl.Int64).fill_null(0)
    return [nulls, numbers.to_numpy().astype("<i8").tobytes()]


def fingerprint(inputs: Mapping[str, pl.DataFrame]) -> str:
    """SHA-256 over named input frames, independent of row order and of where they came
    from: each frame is sorted by all its columns, then hashed column by column as
    little-endian integers or length-prefixed UTF-8 with a null mask."""
    digest = hashlib.sha256()
    for name in sorted(inputs):
        frame = inputs[name]
        columns = sorted(frame.columns)
        sortable = [c for c in columns if not isinstance(frame.schema[c], pl.List)]
        ordered = frame.select(columns).sort(sortable, nulls_last=True)
        digest.update(f"{name}:{len(ordered)}:".encode())
        for column in columns:
            digest.update(f"{column}:{ordered.schema[column]}:".encode())
            for part in _column_bytes(ordered.get_column(column)):
                digest.update(len(part).to_bytes(8, "little"))
                digest.update(part)
    return digest.hexdigest()
