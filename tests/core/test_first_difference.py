"""Naming the first difference (core/first_difference.py): lines, rows and fingerprint
parts, each on one side only or changed."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from rewards.core import (
    changed_parts,
    fingerprint_parts,
    first_line_difference,
    first_row_difference,
    lines_of,
    rows_in_bucket,
)


def test_the_first_differing_line_is_named_with_both_sides() -> None:
    def lines(*parts: bytes) -> Iterator[bytes]:
        return lines_of(parts)

    assert first_line_difference(lines(b"a\nb\n", b"c\n"), lines(b"a\nb\nc\n")) is None
    said = first_line_difference(lines(b"a\nB\n", b"c\n"), lines(b"a\nb\nX\n"))
    assert said == "line 2: recomputed 'B', recorded 'b'"
    ended = first_line_difference(lines(b"a\nb\n"), lines(b"a\n", b"b\nc\n"))
    assert ended == "line 3: the recomputed file ends before it"


def test_the_first_differing_row_is_named_by_its_key() -> None:
    before = pl.DataFrame({"id": ["a", "b", "c"], "n": [1, 2, 3]})
    assert first_row_difference(before, before, ["id"]) is None
    changed = before.with_columns(n=pl.when(pl.col("id") == "c").then(9).otherwise("n"))
    assert first_row_difference(changed, before, ["id"]) == "id c: n recomputed 9, recorded 3"
    fewer = before.filter(pl.col("id") != "b")
    assert first_row_difference(fewer, before, ["id"]).startswith("id b: recorded")  # type: ignore[union-attr]
    assert first_row_difference(before, fewer, ["id"]).startswith("id b: recomputed")  # type: ignore[union-attr]
    assert "columns" in first_row_difference(before.rename({"n": "m"}), before, ["id"])  # type: ignore[operator]


def test_a_changed_row_is_traced_to_its_bucket_and_devices() -> None:
    frame = pl.DataFrame({"device_id": [f"gpu-{i}" for i in range(50)], "n": list(range(50))})
    edited = frame.with_columns(n=pl.when(pl.col("device_id") == "gpu-7").then(-1).otherwise("n"))

    def parts(f: pl.DataFrame) -> pl.DataFrame:
        return fingerprint_parts(f).select(pl.lit("x").alias("frame"), pl.all())

    assert changed_parts(parts(frame), parts(frame)).is_empty()
    changed = changed_parts(parts(edited), parts(frame))
    assert changed.height == 1
    bucket = changed.get_column("bucket").item()
    assert "gpu-7" in rows_in_bucket(edited, bucket).get_column("device_id").to_list()
    gone = changed_parts(parts(frame.filter(pl.col("device_id") != "gpu-7")), parts(frame))
    assert gone.height == 1 and gone.get_column("rows_recorded").item() >= 1
