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
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import polars as pl

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
    explanation in words, so a request only slices and serializes."""
    return rows.with_columns(
        explanation_expr(policy),
        pl.col("epoch_start").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        pl.col("crediting_incidents").str.split(";").fill_null([]),
    ).select(STORED_ROWS)


def owner_documents(devices: pl.DataFrame, chunk_devices: int = 20_000) -> Iterator[pl.DataFrame]:
    """Per owner, in owner order: owner_id, rows (device-epochs) and document (the JSON
    array of the owner's STORED_ROWS without owner_id, by device then epoch), from the
    owner's `device_documents` joined: each row is rendered once, for both. About
    `chunk_devices` devices at a time, ending at an owner's last device, so only that
    many owners' documents are in memory at once."""
    owners = devices.get_column("owner_id")
    start = 0
    while start < devices.height:
        stop = min(devices.height, start + chunk_devices)
        if stop < devices.height:  # end the chunk at an owner boundary
            stop = int(owners.search_sorted(owners[stop - 1], "right"))
        inner = pl.col("document").str.slice(1, pl.col("document").str.len_bytes() - 2)
        yield (
            devices.slice(start, stop - start)
            .group_by("owner_id", maintain_order=True)
            .agg(pl.col("rows").sum(), ("[" + inner.str.join(",") + "]").alias("document"))
        )
        start = stop


PACKED_DOCUMENTS: dict[str, pl.DataType] = {
    "owner_id": pl.String(),
    "rows": pl.Int64(),
    "sha256": pl.String(),
    "document": pl.Binary(),
}


def pack_documents(documents: pl.DataFrame, threads: int = 1) -> pl.DataFrame:
    """PACKED_DOCUMENTS of `owner_documents` frames: each document compressed (zlib,
    level 1) with the SHA-256 of the compressed bytes, as the view stores them; on
    `threads` threads (see `_packed`)."""
    packed, digests = _packed(documents.get_column("document"), threads)
    return pl.DataFrame(
        {
            "owner_id": documents.get_column("owner_id"),
            "rows": documents.get_column("rows"),
            "sha256": digests,
            "document": packed,
        },
        schema=PACKED_DOCUMENTS,
    )


def _packed(documents: pl.Series, threads: int) -> tuple[list[bytes], list[str]]:
    """Each document compressed (zlib, level 1) and the SHA-256 of the result, in order.
    Compressing is most of packing (290 MB/s a core; a 600,000-GPU season's documents
    are about 17 GB of JSON) and zlib and hashlib let go of the GIL, so `threads`
    threads each pack a contiguous share (one future a document was no faster)."""

    def pack(texts: list[str]) -> list[tuple[bytes, str]]:
        out = []
        for text in texts:
            data = zlib.compress(text.encode(), 1)
            out.append((data, hashlib.sha256(data).hexdigest()))
        return out

    texts = documents.to_list()
    size = -(-len(texts) // max(1, threads)) or 1
    shares = [texts[i : i + size] for i in range(0, len(texts), size)]
    with ThreadPoolExecutor(max(1, min(threads, len(shares)))) as pool:
        done = [pair for share in pool.map(pack, shares) for pair in share]
    return [d for d, _ in done], [h for _, h in done]


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
    """Per (owner_id, device_id) of VIEW_ROWS `rows`, in their order: `states` (a
    GRID_LETTERS letter per epoch 0..epochs-1, NOT_OWNED where the device was not the
    owner's), `rows` (its device-epochs) and `document` (the JSON array of its
    STORED_ROWS without owner_id, by epoch)."""
    keys = ["owner_id", "device_id"]
    if rows.is_empty():
        return pl.DataFrame(schema={"owner_id": pl.String, "device_id": pl.String,
                                    "states": pl.String, "rows": pl.Int64,
                                    "document": pl.String})  # fmt: skip
    letters = (
        rows.select(*keys, "epoch", grid_letter_expr(policy).alias("letter"))
        .pivot(on="epoch", index=keys, values="letter", sort_columns=True)
        .rename(lambda name: name if name in keys else f"e{name}")
    )
    states = letters.select(
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
    documents = (
        stored_rows(rows, policy)
        .select(*keys, pl.struct(pl.all().exclude("owner_id")).struct.json_encode().alias("j"))
        .group_by(keys, maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("rows"),
            ("[" + pl.col("j").str.join(",") + "]").alias("document"),
        )
    )
    return documents.join(states, on=keys, how="left", maintain_order="left").select(
        *keys, "states", "rows", "document"
    )


PACKED_DEVICE_DOCUMENTS: dict[str, pl.DataType] = {
    "owner_id": pl.String(),
    "device_id": pl.String(),
    "states": pl.String(),
    "sha256": pl.String(),
    "document": pl.Binary(),
}


def pack_device_documents(documents: pl.DataFrame, threads: int = 1) -> pl.DataFrame:
    """PACKED_DEVICE_DOCUMENTS of `device_documents`: each document compressed as
    `pack_documents` does."""
    packed, digests = _packed(documents.get_column("document"), threads)
    return pl.DataFrame(
        {
            "owner_id": documents.get_column("owner_id"),
            "device_id": documents.get_column("device_id"),
            "states": documents.get_column("states"),
            "sha256": digests,
            "document": packed,
        },
        schema=PACKED_DEVICE_DOCUMENTS,
    )
