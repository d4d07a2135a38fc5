"""The fingerprint of a snapshot's frozen inputs (DESIGN 5, 9).

A snapshot records the SHA-256 of the inputs it was computed from (intervals, confirmed
incidents, incident versions, device metadata, ownership), so a rerun on unchanged inputs
is found and an audit bundle can be checked against the snapshot. The hash depends only on
the frames' names, columns, types and rows, never on row order, on where the frames came
from, or on how a run was sharded.

Format (FORMAT, version 2). A frame's rows are grouped by the fine bucket of their
device_id (core/shards.py; every row in bucket 0 when the frame has no device_id, a null
device_id hashed as ""). Within a bucket the rows are sorted by all columns (by name, list
columns excluded; nulls last) and hashed column by column (by name): per column its parts,
each as an 8-byte little-endian length then its bytes - the null mask (one byte a row),
then for strings the UTF-8 lengths (little-endian u64) and the bytes end to end, for
booleans one byte a value, for others the physical value as a little-endian i64 (list
columns: their sorted items joined by U+001F, as a string). The fingerprint is the
SHA-256 of FORMAT, then per frame (by name) "name:rows:", "column:type:" per column, and
per non-empty bucket (ascending) the bucket (u32), its rows (u64) and its digest. A shard
computes its buckets' digests (`fingerprint_parts`) and only those travel
(`combine_fingerprint`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import polars as pl

from rewards.core.frames import increasing
from rewards.core.shards import device_buckets

FORMAT = b"ignition-rewards input fingerprint v2\n"

# One row per non-empty bucket of a frame.
FINGERPRINT_PARTS: dict[str, pl.DataType] = {
    "bucket": pl.UInt32(),
    "rows": pl.Int64(),
    "digest": pl.Binary(),
}
_BUCKET = "\x00bucket"  # never a column name of ours


def _column_parts(series: pl.Series) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The column's parts as arrays, each with the byte offset of every row (None when
    each row takes a fixed width of the array's items)."""
    nulls = series.is_null().to_numpy().astype(np.uint8)
    if series.dtype == pl.String:
        offsets, joined = _utf8_buffers(series.fill_null(""))
        return [(nulls, None), (np.diff(offsets).astype("<u8"), None), (joined, offsets)]
    if series.dtype == pl.List(pl.String):
        return _column_parts(series.list.sort().list.join("\x1f"))
    if series.dtype == pl.Boolean:
        return [(nulls, None), (series.fill_null(False).to_numpy().astype(np.uint8), None)]
    numbers = series.to_physical().cast(pl.Int64).fill_null(0)
    return [(nulls, None), (numbers.to_numpy().astype("<i8"), None)]


def _utf8_buffers(strings: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """The values' UTF-8 bytes end to end, and where each value starts (one more offset
    than values, the first 0), read from the buffers of the values as an Arrow
    large_string array, without copying them again (polars joining them into one string
    took 5x as long: a third of the fingerprint at fleet size)."""
    array = strings.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string
    _, offsets, data = array.buffers()
    if offsets is None or data is None:  # no values
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    bounds = np.frombuffer(offsets, dtype="<i8")[array.offset : array.offset + len(array) + 1]
    return bounds - bounds[0], np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]]


def fingerprint_parts(frame: pl.DataFrame) -> pl.DataFrame:
    """FINGERPRINT_PARTS of `frame`: each non-empty fine bucket's row count and digest.
    A frame split by device shard gives, shard by shard, the parts of the whole."""
    columns = sorted(frame.columns)
    if "device_id" in frame.columns:
        buckets = device_buckets(frame.get_column("device_id").fill_null(""))
    else:
        buckets = pl.Series(values=[0] * frame.height, dtype=pl.UInt32)
    sortable = [c for c in columns if not isinstance(frame.schema[c], pl.List)]
    keyed = frame.select(columns).with_columns(buckets.alias(_BUCKET))
    ordered = _sorted(keyed, [_BUCKET, *sortable])
    counts = ordered.get_column(_BUCKET).rle()
    names, rows = counts.struct.field("value").to_list(), counts.struct.field("len").to_list()
    bounds = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])
    parts = [p for c in columns for p in _column_parts(ordered.get_column(c))]
    digests = []
    for i in range(len(rows)):
        digest = hashlib.sha256()
        for values, offsets in parts:
            lo, hi = (bounds[i], bounds[i + 1]) if offsets is None else offsets[bounds[i : i + 2]]
            piece = values[lo:hi]  # contiguous: hashed where it lies
            digest.update(piece.nbytes.to_bytes(8, "little"))
            digest.update(piece.data)
        digests.append(digest.digest())
    return pl.DataFrame(
        {"bucket": names, "rows": rows, "digest": digests}, schema=FINGERPRINT_PARTS
    )


def combine_fingerprint(
    frames: Mapping[str, tuple[Mapping[str, pl.DataType], Iterable[pl.DataFrame]]],
) -> str:
    """The fingerprint of named frames from their schemas and their parts (each frame's
    parts from any split by device shard, in any order)."""
    digest = hashlib.sha256(FORMAT)
    for name in sorted(frames):
        schema, pieces = frames[name]
        parts = pl.concat([pl.DataFrame(schema=FINGERPRINT_PARTS), *pieces]).sort("bucket")
        if parts.get_column("bucket").is_duplicated().any():
            raise ValueError(f"{name}: a bucket's rows came in more than one part")
        digest.update(f"{name}:{parts.get_column('rows').sum()}:".encode())
        for column in sorted(schema):
            digest.update(f"{column}:{schema[column]}:".encode())
        for bucket, rows, part in parts.iter_rows():
            digest.update(bucket.to_bytes(4, "little") + rows.to_bytes(8, "little") + part)
    return digest.hexdigest()


def fingerprint(inputs: Mapping[str, pl.DataFrame]) -> str:
    """SHA-256 over named input frames, independent of row order and of where they came
    from (the format above)."""
    return combine_fingerprint(
        {name: (frame.schema, [fingerprint_parts(frame)]) for name, frame in inputs.items()}
    )


def _sorted(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """`frame` sorted by `keys` (nulls last). A frame that, stably ordered by its first key,
    is strictly increasing by the first three without nulls in them, is sorted by all of
    them: intervals arrive sorted by device and time, and sorting 44M rows by every column
    took most of the fingerprint's time at fleet size."""
    by_first = frame.sort(keys[0], maintain_order=True)
    if len(keys) >= 3 and increasing(by_first, *keys[:3], strict=True):
        return by_first
    return frame.sort(keys, nulls_last=True)
