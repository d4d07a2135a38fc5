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


def owner_documents(
    rows: pl.DataFrame, policy: SeasonPolicy, chunk_rows: int = 1_000_000
) -> Iterator[pl.DataFrame]:
    """Per owner, in owner order: owner_id, rows (device-epochs) and document (the JSON
    array of the owner's STORED_ROWS without owner_id, by device then epoch), made about
    `chunk_rows` rows at a time so only that many rendered rows are in memory at once.
    `rows` is VIEW_ROWS in view order (owner, device, epoch)."""
    owners = rows.get_column("owner_id")
    start = 0
    while start < rows.height:
        stop = min(rows.height, start + chunk_rows)
        if stop < rows.height:  # end the chunk at an owner boundary
            stop = int(owners.search_sorted(owners[stop - 1], "right"))
        chunk = stored_rows(rows.slice(start, stop - start), policy)
        yield (
            chunk.select(
                "owner_id",
                pl.struct(pl.all().exclude("owner_id")).struct.json_encode().alias("json"),
            )
            .group_by("owner_id", maintain_order=True)
            .agg(
                pl.len().cast(pl.Int64).alias("rows"),
                ("[" + pl.col("json").str.join(",") + "]").alias("document"),
            )
        )
        start = stop


PACKED_DOCUMENTS: dict[str, pl.DataType] = {
    "owner_id": pl.String(),
    "rows": pl.Int64(),
    "sha256": pl.String(),
    "document": pl.Binary(),
}


def pack_documents(documents: pl.DataFrame) -> pl.DataFrame:
    """PACKED_DOCUMENTS of `owner_documents` frames: each document compressed (zlib,
    level 1) with the SHA-256 of the compressed bytes, as the view stores them."""
    packed = [zlib.compress(text.encode(), 1) for text in documents.get_column("document")]
    return pl.DataFrame(
        {
            "owner_id": documents.get_column("owner_id"),
            "rows": documents.get_column("rows"),
            "sha256": [hashlib.sha256(data).hexdigest() for data in packed],
            "document": packed,
        },
        schema=PACKED_DOCUMENTS,
    )
