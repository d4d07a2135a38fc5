"""A snapshot's canonical export (DESIGN 5): the same rows give the same bytes and hash.

`canonical_csv` is the file finance receives (times as RFC 3339, cells neutralised against
CSV injection as DESIGN 10 asks), `content_hash` its SHA-256 recorded in the snapshot, and
`reward_decimal` the exact token amount beside each integer reward.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import polars as pl

from rewards.core.csv_cells import csv_bytes
from rewards.core.frames import check_frame
from rewards.core.snapshot_rows import SNAPSHOT_ROWS

_T = TypeVar("_T")
_R = TypeVar("_R")


def export_rows(rows: pl.DataFrame, decimals: int) -> pl.DataFrame:
    """Snapshot rows as finance receives them: `reward_decimal` (the reward in tokens, an
    exact decimal string) follows `reward`."""
    check_frame(rows, SNAPSHOT_ROWS, "snapshot rows")
    columns = list(SNAPSHOT_ROWS)
    at = columns.index("reward") + 1
    return rows.select(
        *columns[:at], reward_decimal("reward", decimals).alias("reward_decimal"), *columns[at:]
    )


def canonical_csv(rows: pl.DataFrame, decimals: int) -> bytes:
    """The canonical export of a snapshot: `export_rows` as CSV, times as RFC 3339 (Z),
    cells that could start a formula neutralised (`csv_bytes`)."""
    return export_csv(export_rows(rows, decimals))


def export_csv(table: pl.DataFrame) -> bytes:
    """`canonical_csv` of rows already made `export_rows`."""
    # an epoch has one start: format each once, not once per device
    starts = table.select("epoch", "epoch_start").unique("epoch")
    text = starts.select(
        "epoch", pl.col("epoch_start").dt.to_string("%Y-%m-%dT%H:%M:%SZ").alias("_start")
    )
    table = (
        table.join(text, on="epoch", how="left", maintain_order="left")
        .with_columns(pl.col("_start").alias("epoch_start"))
        .drop("_start")
    )
    return csv_bytes(table)


def canonical_csv_parts(rows: Iterable[pl.DataFrame], decimals: int) -> Iterator[bytes]:
    """`canonical_csv` of the rows' concatenation, a part per frame: the header once, each
    frame's lines after it. Joined, the parts are the bytes `canonical_csv` makes whole."""
    return (data for _, data in canonical_csv_pairs(rows, decimals))


def canonical_csv_pairs(
    rows: Iterable[pl.DataFrame], decimals: int, ahead: int = 2
) -> Iterator[tuple[pl.DataFrame | None, bytes]]:
    """Each frame of `rows` as `export_rows`, with its part of `canonical_csv_parts` (the
    header alone, without a frame, when there are no rows). The parts are made on `ahead`
    worker threads while the caller uses those before them (polars lets go of the GIL):
    a snapshot's 180 parts took 16 s one after another at fleet size. At most `ahead` + 1
    frames are pulled from `rows` before the first pair is handed out."""

    def made(frame: pl.DataFrame) -> tuple[pl.DataFrame, bytes]:
        table = export_rows(frame, decimals)
        return table, export_csv(table)

    header = True
    for _, (table, data) in _in_order_ahead(rows, made, ahead):
        yield table, data if header else data.split(b"\n", 1)[1]
        header = False
    if header:  # no rows at all: the header alone
        yield None, canonical_csv(pl.DataFrame(schema=dict(SNAPSHOT_ROWS)), decimals)


def _in_order_ahead(
    items: Iterable[_T], work: Callable[[_T], _R], threads: int
) -> Iterator[tuple[_T, _R]]:
    """(item, work(item)) in the items' order, `work` running on `threads` threads for
    the items after the one handed out (items are pulled by the caller's thread)."""
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending: deque[tuple[_T, Future[_R]]] = deque()
        for item in items:
            pending.append((item, pool.submit(work, item)))
            if len(pending) > threads:
                done, made = pending.popleft()
                yield done, made.result()
        while pending:
            done, made = pending.popleft()
            yield done, made.result()


def content_hash(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def reward_decimal(column: str, decimals: int) -> pl.Expr:
    """Base units as an exact decimal string with `decimals` places (e.g. 1234567 -> 1.234567)."""
    units = pl.col(column)
    if decimals == 0:
        return units.cast(pl.String)
    scale = 10**decimals
    sign = pl.when(units < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    magnitude = units.abs()
    whole = (magnitude // scale).cast(pl.String)
    fraction = (magnitude % scale).cast(pl.String).str.zfill(decimals)
    return pl.concat_str(sign, whole, pl.lit("."), fraction)
