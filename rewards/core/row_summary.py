"""What a snapshot records of its rows (DESIGN 5), in one pass over them a frame at a time:
the canonical CSV's SHA-256, the supplier and epoch totals and the counts, equal to those of
the rows whole (`canonical_csv`, `supplier_totals`, `epoch_totals`), so that a season's
rows never have to be in memory at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import polars as pl

from rewards.core.canonical_export import canonical_csv_parts
from rewards.core.snapshot_rows import SNAPSHOT_ROWS, SUPPLIERS, epoch_sums, epoch_table


@dataclass(frozen=True)
class RowsSummary:
    """What a snapshot records of its rows, made in one pass over them (`summarize_rows`)."""

    digest: str  # SHA-256 of the canonical CSV
    suppliers: pl.DataFrame  # supplier_totals
    totals: pl.DataFrame  # epoch_totals
    rows: int
    devices: int
    eligible: int


def summarize_rows(
    rows: Iterable[pl.DataFrame], *, epochs: range, pool_per_epoch: int, decimals: int
) -> RowsSummary:
    """The content hash, supplier and epoch totals and counts of snapshot rows given in
    canonical order a frame at a time (any split): the same as of the rows whole, with
    memory for one frame and the per-owner and per-epoch partial sums."""
    digest = hashlib.sha256()
    owners: list[pl.DataFrame] = []
    pairs: list[pl.DataFrame] = []
    sums: list[pl.DataFrame] = []
    count = devices = eligible = 0
    last: str | None = None

    def frames() -> Iterable[pl.DataFrame]:
        nonlocal count, devices, eligible, last
        for frame in rows:
            if frame.is_empty():
                continue
            owned = frame.filter(pl.col("owner_id").is_not_null())
            owners.append(
                owned.group_by("owner_id").agg(
                    pl.col("reward").sum().cast(pl.Int64),
                    pl.col("eligible").sum().cast(pl.Int64).alias("eligible_device_epochs"),
                )
            )
            pairs.append(owned.select("owner_id", "device_id").unique())
            sums.append(epoch_sums(frame))
            count += frame.height
            eligible += int(frame.get_column("eligible").sum())
            ids = frame.get_column("device_id")
            # a device's rows are consecutive; one may go on from the frame before
            devices += ids.n_unique() - (1 if ids[0] == last else 0)
            last = ids[-1]
            yield frame

    for part in canonical_csv_parts(frames(), decimals):
        digest.update(part)
    none = pl.DataFrame(schema=dict(SNAPSHOT_ROWS))
    by_owner = (
        pl.concat(owners)
        if owners
        else none.select(
            "owner_id", "reward", pl.col("eligible").cast(pl.Int64).alias("eligible_device_epochs")
        )
    )
    held = (
        pl.concat(pairs).unique().group_by("owner_id").agg(pl.len().cast(pl.Int64).alias("devices"))
        if pairs
        else pl.DataFrame(schema={"owner_id": pl.String(), "devices": pl.Int64()})
    )
    suppliers = (
        by_owner.group_by("owner_id")
        .agg(pl.col("reward").sum(), pl.col("eligible_device_epochs").sum())
        .join(held, on="owner_id", how="left")
        .sort("owner_id")
        .select(list(SUPPLIERS))
    )
    summed = pl.concat(sums).group_by("epoch").agg(pl.all().sum()) if sums else epoch_sums(none)
    return RowsSummary(
        digest=digest.hexdigest(),
        suppliers=suppliers,
        totals=epoch_table(summed, epochs, pool_per_epoch),
        rows=count,
        devices=devices,
        eligible=eligible,
    )
