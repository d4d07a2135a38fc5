"""The eligibility view: every device-epoch of a season so far, with its owner and the
reasons in words, stored as one ready JSON document per supplier.

Computing eligibility takes tens of milliseconds even for a handful of devices and tens of
seconds for a 600,000-device fleet, far too slow per request; and turning a few hundred
rows into JSON per request costs more than everything else a request does. So a job
computes the whole season at once (the same rules as a snapshot) and renders each
supplier's rows, explanations included, into the JSON the API sends; a request reads one
document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate, pairwise
from typing import TypeVar

import numpy as np
import polars as pl

from rewards.core.deflate import Segment, json_array, segment
from rewards.core.explanations import explanation_expr
from rewards.core.frames import (
    DEVICE_EPOCH_BRIDGES,
    DEVICE_EPOCH_COUNTED,
    DEVICE_EPOCH_KEY,
    DEVICE_EPOCH_OUTCOME,
    DEVICE_EPOCH_SHORTFALL,
    DEVICE_EPOCH_WHY,
    TIME,
    to_us,
)
from rewards.core.policy import SeasonPolicy
from rewards.core.snapshot_rows import SNAPSHOT_ROWS

_T = TypeVar("_T")
_R = TypeVar("_R")

# The view's rows: a snapshot's device-epoch rows without the reward (a reward is only
# known once the whole season's pool is split; suppliers read it per published snapshot)
# and with whether the epoch was still running when the view was computed.
VIEW_ROWS: Mapping[str, pl.DataType] = {
    **{k: v for k, v in SNAPSHOT_ROWS.items() if k != "reward"},
    "in_progress": pl.Boolean(),
}


def started_epochs(policy: SeasonPolicy, as_of_us: int) -> range:
    """The season's epochs that have begun by `as_of_us` (UTC microseconds)."""
    start = to_us(policy.start)
    if as_of_us < start:
        return range(0)
    return range(min(policy.epoch_count, (as_of_us - start) // policy.epoch_length_us + 1))


def view_rows(snapshot_rows: pl.DataFrame, policy: SeasonPolicy, as_of_us: int) -> pl.DataFrame:
    """VIEW_ROWS of the device-epochs in `snapshot_rows` (SNAPSHOT_ROWS) that have an owner,
    in (owner_id, device_id, epoch) order."""
    epoch_end = pl.col("epoch_start") + pl.duration(microseconds=policy.epoch_length_us)
    return (
        snapshot_rows.filter(pl.col("owner_id").is_not_null())
        .with_columns(in_progress=epoch_end > pl.lit(as_of_us).cast(TIME))
        .select(list(VIEW_ROWS))
        .sort("owner_id", "device_id", "epoch")
    )


def owner_slices(rows: pl.DataFrame, size: int) -> Iterator[pl.DataFrame]:
    """`rows` (sorted by owner_id) in consecutive slices of about `size` rows, each ending
    at an owner's last row: every owner's rows lie whole in one slice."""
    owners = rows.get_column("owner_id")
    start = 0
    while start < rows.height:
        stop = min(rows.height, start + max(1, size))
        if stop < rows.height:  # the owner of the slice's last row ends it
            stop = int(owners.search_sorted(owners[stop - 1], "right"))
        yield rows.slice(start, stop - start)
        start = stop


# What a bucket stores: each row as the API shows it (EligibilityPage.device_epochs), with
# the owner in front to find a supplier's slice.
STORED_ROWS = (
    "owner_id",
    *DEVICE_EPOCH_KEY,
    "in_progress",
    *DEVICE_EPOCH_COUNTED,
    *DEVICE_EPOCH_OUTCOME,
    *DEVICE_EPOCH_SHORTFALL,
    *DEVICE_EPOCH_BRIDGES,
    *DEVICE_EPOCH_WHY,
    "explanation",
)


def stored_rows(rows: pl.DataFrame, policy: SeasonPolicy) -> pl.DataFrame:
    """VIEW_ROWS as stored (STORED_ROWS): times as ISO text, incidents as a list, and the
    explanation in words, so a request only reads them. Made by the streaming engine, a
    morsel at a time on every core: a frame just sorted (as `view_rows` leaves it) is one
    chunk, which the in-memory engine words on one core (5.3 s -> 1.4 s for 1.5M rows)."""
    return (
        rows.lazy()
        .with_columns(
            explanation_expr(policy),
            pl.col("epoch_start").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            pl.col("crediting_incidents").str.split(";").fill_null([]),
        )
        .select(STORED_ROWS)
        .collect(engine="streaming")
    )


# A device-epoch's letter on the grid (core.timeline.grid_state's four states): a supplier's
# page reads a device's letters, one per begun epoch ("-" while the device was not theirs).
GRID_LETTERS = {"eligible": "E", "helped": "H", "ineligible": "I", "silent": "S"}
NOT_OWNED = "-"


def grid_letter_expr(policy: SeasonPolicy) -> pl.Expr:
    """`core.timeline.grid_state` as a column of GRID_LETTERS over VIEW_ROWS."""
    online_us = (pl.col("online_s") * 1_000_000).round().cast(pl.Int64)
    return (
        pl.when(pl.col("eligible"))
        .then(
            pl.when(online_us < policy.min_counted_us)
            .then(pl.lit(GRID_LETTERS["helped"]))
            .otherwise(pl.lit(GRID_LETTERS["eligible"]))
        )
        .when(pl.col("reason") == "NO_HEARTBEATS")
        .then(pl.lit(GRID_LETTERS["silent"]))
        .otherwise(pl.lit(GRID_LETTERS["ineligible"]))
    )


def device_documents(rows: pl.DataFrame, policy: SeasonPolicy, epochs: int) -> pl.DataFrame:
    """Per (owner_id, device_id) of VIEW_ROWS `rows` (in `view_rows` order: each
    device's rows together), in their order: `states` (a
    GRID_LETTERS letter per epoch 0..epochs-1, NOT_OWNED where the device was not the
    owner's), `rows` (its device-epochs) and `document` (the JSON array of its
    STORED_ROWS without owner_id, by epoch)."""
    keys = ["owner_id", "device_id"]
    if rows.is_empty():
        return pl.DataFrame(schema={"owner_id": pl.String, "device_id": pl.String,
                                    "states": pl.String, "rows": pl.Int64,
                                    "document": pl.String})  # fmt: skip
    states = _device_states(rows, policy, epochs)
    documents = (
        stored_rows(rows, policy)
        .select(
            *keys,
            pl.struct(keys).rle_id().alias("run"),  # a device's rows are one run of rows
            pl.struct(pl.all().exclude("owner_id")).struct.json_encode().alias("j"),
        )
        .group_by("run", maintain_order=True)  # an integer key: 3.3 s -> 0.9 s for 1.5M rows
        .agg(
            *(pl.col(k).first() for k in keys),
            pl.len().cast(pl.Int64).alias("rows"),
            ("[" + pl.col("j").str.join(",") + "]").alias("document"),
        )
    )
    return documents.join(states, on=keys, how="left", maintain_order="left").select(
        *keys, "states", "rows", "document"
    )


def _device_states(rows: pl.DataFrame, policy: SeasonPolicy, epochs: int) -> pl.DataFrame:
    """Per (owner_id, device_id) of VIEW_ROWS `rows`: its `states` (see device_documents)."""
    keys = ["owner_id", "device_id"]
    letters = (
        rows.select(*keys, "epoch", grid_letter_expr(policy).alias("letter"))
        .pivot(on="epoch", index=keys, values="letter", sort_columns=True)
        .rename(lambda name: name if name in keys else f"e{name}")
    )
    return letters.select(
        *keys,
        pl.concat_str(
            [
                pl.col(f"e{e}").fill_null(NOT_OWNED)
                if f"e{e}" in letters.columns
                else pl.lit(NOT_OWNED)
                for e in range(epochs)
            ]
        ).alias("states"),
    )


def pack_devices(
    rows: pl.DataFrame, policy: SeasonPolicy, epochs: int, threads: int = 1
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`pack_view(device_documents(rows, policy, epochs), threads)`, the same bytes, made
    without writing each device's document as text: every row's JSON is written with a
    "," after it, so the rows of a device (together, in `view_rows` order) lie end to end
    in the Arrow buffer of that column, and a device's segment is compressed straight from
    its stretch of the buffer (the "," after its last row left out). Joining each device's
    rows into a string took a fifth of the rendering's time at fleet size (py-spy).
    `pack_view(device_documents(...))` stays as the readable form it is tested against."""
    keys = ["owner_id", "device_id"]
    if rows.is_empty():
        return pack_view(device_documents(rows, policy, epochs), threads)
    stored = stored_rows(rows, policy)
    run_lengths = stored.select(pl.struct(keys).rle_id()).to_series().rle().struct.field("len")
    bounds = np.concatenate([[0], np.cumsum(run_lengths.to_numpy(), dtype=np.int64)])
    texts = stored.select(
        pl.struct(pl.all().exclude("owner_id")).struct.json_encode() + ","
    ).to_series()
    array = texts.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string: one buffer
    _, offsets_buffer, data = array.buffers()
    assert offsets_buffer is not None and data is not None  # rows.height > 0: text
    offsets = np.frombuffer(offsets_buffer, dtype="<i8")[array.offset :]
    starts, ends = offsets[bounds[:-1]], offsets[bounds[1:]] - 1
    buffer = memoryview(data)

    def segments(share: tuple[int, int]) -> list[Segment]:
        first, count = share
        return [segment(buffer[starts[i] : ends[i]]) for i in range(first, first + count)]

    devices = (
        stored.select(keys)
        .gather(bounds[:-1])
        .with_columns(rows=run_lengths.cast(pl.Int64))
        .join(_device_states(rows, policy, epochs), on=keys, how="left", maintain_order="left")
        .select(*keys, "states", "rows")
    )
    return _pack(devices, _threaded(segments, _shares(devices.height, threads)), threads)


PACKED_DOCUMENTS: dict[str, pl.DataType] = {
    "owner_id": pl.String(),
    "rows": pl.Int64(),
    "sha256": pl.String(),
    "document": pl.Binary(),
}
PACKED_DEVICE_DOCUMENTS: dict[str, pl.DataType] = {
    "owner_id": pl.String(),
    "device_id": pl.String(),
    "states": pl.String(),
    "sha256": pl.String(),
    "document": pl.Binary(),
}


def pack_view(devices: pl.DataFrame, threads: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    """PACKED_DOCUMENTS (per owner, in owner order) and PACKED_DEVICE_DOCUMENTS of
    `device_documents`: each document zlib-compressed, with the SHA-256 of its compressed
    bytes, as the view stores them. An owner's document is the JSON array of its
    devices' rows, by device then epoch. Each device's rows are compressed once, for
    both documents (core/deflate.py), and the work is shared among `threads` threads
    (zlib-ng and hashlib let go of the GIL)."""
    texts = devices.get_column("document")
    segments = _threaded(_segments, [texts.slice(o, n) for o, n in _shares(texts.len(), threads)])
    return _pack(devices, segments, threads)


def _pack(
    devices: pl.DataFrame, segments: list[Segment], threads: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`pack_view`'s frames from each device's (owner_id, device_id, states, rows) and
    the segment of its rows."""
    by_device = [json_array([s]) for s in segments]
    owners = devices.group_by("owner_id", maintain_order=True).agg(pl.len(), pl.col("rows").sum())
    bounds = [0, *accumulate(owners.get_column("len").to_list())]
    by_owner = [json_array(segments[lo:hi]) for lo, hi in pairwise(bounds)]
    every = by_owner + by_device
    digests = _threaded(_digests, [every[o : o + n] for o, n in _shares(len(every), threads)])
    packed_owners = pl.DataFrame(
        {"owner_id": owners.get_column("owner_id"), "rows": owners.get_column("rows"),
         "sha256": digests[: len(by_owner)], "document": by_owner},
        schema=PACKED_DOCUMENTS,
    )  # fmt: skip
    packed_devices = pl.DataFrame(
        {"owner_id": devices.get_column("owner_id"), "device_id": devices.get_column("device_id"),
         "states": devices.get_column("states"), "sha256": digests[len(by_owner) :],
         "document": by_device},
        schema=PACKED_DEVICE_DOCUMENTS,
    )  # fmt: skip
    return packed_owners, packed_devices


def _shares(items: int, threads: int) -> list[tuple[int, int]]:
    """`threads` contiguous shares of `items` (offset, length), none empty."""
    size = -(-items // max(1, threads)) or 1
    return [(o, min(size, items - o)) for o in range(0, items, size)]


def _threaded(work: Callable[[_T], list[_R]], shares: list[_T]) -> list[_R]:
    """`work` of each share on a thread of its own, the results end to end in order."""
    if len(shares) <= 1:
        return [r for share in shares for r in work(share)]
    with ThreadPoolExecutor(len(shares)) as pool:
        return [r for done in pool.map(work, shares) for r in done]


def _segments(documents: pl.Series) -> list[Segment]:
    """Each document's rows (the JSON array without its brackets), compressed; a few
    thousand at a time as bytes, so no second copy of the documents is made."""
    found: list[Segment] = []
    for offset in range(0, documents.len(), 4_096):
        chunk = documents.slice(offset, 4_096).cast(pl.Binary).to_list()
        found += [segment(memoryview(d)[1:-1]) for d in chunk]
    return found


def _digests(documents: list[bytes]) -> list[str]:
    return [hashlib.sha256(d).hexdigest() for d in documents]
