"""The input fingerprint is the format its module documents (core/fingerprint.py), byte for
byte: an auditor recomputes it from that text, so a faster way of hashing must not change
a bit. The reference below follows the documented format row by row in plain Python."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core.fingerprint import FORMAT, fingerprint
from rewards.core.shards import FINE_BUCKETS, bucket

TIME = pl.Datetime("us", "UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _part(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


def _column_bytes(values: list[Any], dtype: pl.DataType) -> bytes:
    nulls = bytes(1 if v is None else 0 for v in values)
    if isinstance(dtype, pl.List):
        values = [None if v is None else "\x1f".join(sorted(v)) for v in values]
        dtype = pl.String()
    if dtype == pl.String:
        texts = [("" if v is None else v).encode() for v in values]
        lengths = b"".join(len(t).to_bytes(8, "little") for t in texts)
        return _part(nulls) + _part(lengths) + _part(b"".join(texts))
    if dtype == pl.Boolean:
        return _part(nulls) + _part(bytes(1 if v else 0 for v in values))
    if isinstance(dtype, pl.Datetime):
        values = [None if v is None else (v - EPOCH) // timedelta(microseconds=1) for v in values]
    numbers = b"".join((0 if v is None else v).to_bytes(8, "little", signed=True) for v in values)
    return _part(nulls) + _part(numbers)


def _sort_key(row: dict[str, Any], columns: list[str]) -> tuple[Any, ...]:
    """Ascending by each column, nulls last (strings by code point: UTF-8 byte order)."""
    return tuple((row[c] is None, row[c] if row[c] is not None else 0) for c in columns)


def reference(frames: dict[str, pl.DataFrame]) -> str:
    digest = hashlib.sha256(FORMAT)
    for name in sorted(frames):
        frame = frames[name]
        columns = sorted(frame.columns)
        digest.update(f"{name}:{frame.height}:".encode())
        for column in columns:
            digest.update(f"{column}:{frame.schema[column]}:".encode())
        buckets: dict[int, list[dict[str, Any]]] = {}
        for row in frame.to_dicts():
            key = bucket(row["device_id"] or "", FINE_BUCKETS) if "device_id" in row else 0
            buckets.setdefault(key, []).append(row)
        sortable = [c for c in columns if not isinstance(frame.schema[c], pl.List)]
        for key in sorted(buckets):
            rows = sorted(buckets[key], key=lambda r: _sort_key(r, sortable))
            part = hashlib.sha256()
            for column in columns:
                part.update(_column_bytes([r[column] for r in rows], frame.schema[column]))
            digest.update(key.to_bytes(4, "little") + len(rows).to_bytes(8, "little"))
            digest.update(part.digest())
    return digest.hexdigest()


ids = st.text(alphabet="ab\u00e9\u4e2d-0", max_size=4)
moments = st.integers(0, 10**6).map(lambda s: EPOCH + timedelta(seconds=1_700_000_000 + s))


@st.composite
def loose_frames(draw: st.DrawFn) -> pl.DataFrame:
    """Nulls anywhere, a list column, and a unique number so no two rows tie."""
    size = draw(st.integers(0, 12))
    return pl.DataFrame(
        {
            "device_id": draw(st.lists(st.none() | ids, min_size=size, max_size=size)),
            "start": draw(st.lists(st.none() | moments, min_size=size, max_size=size)),
            "flag": draw(st.lists(st.none() | st.booleans(), min_size=size, max_size=size)),
            "n": draw(st.lists(st.integers(-(2**40), 2**40), min_size=size, max_size=size,
                               unique=True)),
            "ids": draw(st.lists(st.none() | st.lists(ids, max_size=3), min_size=size,
                                 max_size=size)),
        },
        schema={"device_id": pl.String, "start": TIME, "flag": pl.Boolean, "n": pl.Int64,
                "ids": pl.List(pl.String)},
    )  # fmt: skip


@st.composite
def interval_frames(draw: st.DrawFn) -> pl.DataFrame:
    """Intervals as they are stored: distinct (device, end), no nulls in them (the sort
    is skipped when the input is already in order)."""
    keys = draw(st.lists(st.tuples(ids, moments), max_size=12, unique=True))
    size = len(keys)
    return pl.DataFrame(
        {
            "device_id": [d for d, _ in keys],
            "end": [e for _, e in keys],
            "first_boot_id": draw(st.lists(ids, min_size=size, max_size=size)),
            "last_boot_id": draw(st.lists(st.none() | ids, min_size=size, max_size=size)),
        },
        schema={"device_id": pl.String, "end": TIME, "first_boot_id": pl.String,
                "last_boot_id": pl.String},
    ).sort("device_id", "end")  # fmt: skip


@settings(deadline=None, max_examples=150)
@given(loose=loose_frames(), intervals=interval_frames(), shuffle=st.randoms())
def test_the_fingerprint_is_its_documented_format(
    loose: pl.DataFrame, intervals: pl.DataFrame, shuffle: Any
) -> None:
    order = list(range(loose.height))
    shuffle.shuffle(order)
    frames = {
        "loose": loose[order] if order else loose,
        "intervals": intervals,
        "no_devices": loose.drop("device_id"),
    }
    assert fingerprint(frames) == reference(frames)


def test_an_empty_frame_and_a_sliced_one_follow_the_format_too() -> None:
    frame = pl.DataFrame(
        {"device_id": ["x", "y\u00e9", "z", None], "k": ["a", "", "bcd", None]},
        schema={"device_id": pl.String, "k": pl.String},
    )
    for frames in ({"e": frame.clear()}, {"s": frame.slice(1, 2)}, {"s": frame.slice(3)}):
        assert fingerprint(frames) == reference(frames)
