"""Where a recomputation first departs from what was recorded (DESIGN 9, `reproduce`): the
first differing line of two files, the first differing row of two frames, and the input
rows behind a fingerprint part that changed. Each answer is in words an auditor can act
on, or None when there is no difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import zip_longest

import polars as pl

from rewards.core.shards import device_buckets

_SHOWN = 200  # characters of a line or row quoted


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def first_line_difference(found: Iterable[bytes], recorded: Iterable[bytes]) -> str | None:
    """The first line (1-based) where two files, given line by line without their line
    ends, differ, both quoted; read as far as that line only."""
    for number, (a, b) in enumerate(zip_longest(found, recorded), start=1):
        if a is None or b is None:
            shorter = "recomputed" if a is None else "recorded"
            return f"line {number}: the {shorter} file ends before it"
        if a != b:
            return (
                f"line {number}: recomputed {_quoted(a.decode(errors='replace'))}, "
                f"recorded {_quoted(b.decode(errors='replace'))}"
            )
    return None


def lines_of(data: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of text given in parts (each part whole lines, e.g. `canonical_csv_parts`),
    without their line ends."""
    for part in data:
        yield from part.splitlines()


def first_row_difference(
    found: pl.DataFrame, recorded: pl.DataFrame, key: Sequence[str]
) -> str | None:
    """The first row, in `key` order, that is in one frame and not the other (or differs
    in any column), named by its key. Frames of different columns differ at once."""
    if found.schema != recorded.schema:
        return f"columns: recomputed {dict(found.schema)}, recorded {dict(recorded.schema)}"
    only_found = found.join(recorded, on=found.columns, how="anti", nulls_equal=True)
    only_recorded = recorded.join(found, on=found.columns, how="anti", nulls_equal=True)
    if only_found.is_empty() and only_recorded.is_empty():
        return None if found.height == recorded.height else "the same rows, a different count"
    sides = pl.concat(
        [
            only_found.with_columns(side=pl.lit("recomputed")),
            only_recorded.with_columns(side=pl.lit("recorded")),
        ]
    ).sort([*key, "side"], maintain_order=True)
    first = sides.row(0, named=True)
    named = ", ".join(f"{k} {first[k]}" for k in key)
    same_key = sides.filter(pl.all_horizontal(pl.col(k) == first[k] for k in key))
    shown = {row.pop("side"): row for row in same_key.iter_rows(named=True)}
    found_row, recorded_row = shown.get("recomputed"), shown.get("recorded")
    if found_row is None:
        return f"{named}: recorded {_quoted(str(recorded_row))}, not recomputed"
    if recorded_row is None:
        return f"{named}: recomputed {_quoted(str(found_row))}, not recorded"
    changed = {
        c: (found_row[c], recorded_row[c]) for c in found_row if found_row[c] != recorded_row[c]
    }
    return f"{named}: " + "; ".join(
        f"{c} recomputed {a!r}, recorded {b!r}" for c, (a, b) in changed.items()
    )


def changed_parts(found: pl.DataFrame, recorded: pl.DataFrame) -> pl.DataFrame:
    """Of two fingerprint-part tables (`frame`, `bucket`, `rows`, `digest`), the parts that
    differ or are on one side only: frame, bucket, rows and rows_recorded (null on the
    side without it), by frame then bucket."""
    joined = found.join(
        recorded, on=["frame", "bucket"], how="full", coalesce=True, suffix="_recorded"
    )
    same = (pl.col("rows") == pl.col("rows_recorded")) & (
        pl.col("digest") == pl.col("digest_recorded")
    )
    return (
        joined.filter(~same.fill_null(False))
        .select("frame", "bucket", "rows", "rows_recorded")
        .sort("frame", "bucket")
    )


def rows_in_bucket(frame: pl.DataFrame, bucket: int) -> pl.DataFrame:
    """The rows of `frame` in the fine bucket `bucket` of the fingerprint (every row when
    the frame has no device_id)."""
    if "device_id" not in frame.columns:
        return frame
    buckets = device_buckets(frame.get_column("device_id").fill_null(""))
    return frame.filter(buckets == bucket)
