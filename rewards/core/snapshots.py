"""A snapshot's content, from device-epoch results to what finance pays (DESIGN 5).

Everything here is a pure function of frames and plain values, so the same inputs always
give the same rows, the same canonical bytes, the same content hash and the same Merkle
root, whichever database or process computed them:

* `snapshot_rows`: the canonical device-epoch table (owner as of the epoch start).
* `supplier_totals`, `epoch_totals`: what each supplier is paid; how each pool was spent.
* `canonical_csv` and `content_hash`: the bytes finance receives and their SHA-256.
* `fingerprint`: a SHA-256 of input frames that does not depend on their row order.
* `payout_leaves`: the Merkle leaves of a snapshot's payouts.
* `diff_rows`, `diff_suppliers`, `adjustments`: what changed between two snapshots.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from rewards.core.csv_cells import csv_bytes
from rewards.core.frames import DEVICE_EPOCH_KEY, RESULTS, TIME, check_frame, to_us
from rewards.core.merkle import Payout
from rewards.core.policy import SeasonPolicy

# Device ownership over [valid_from, valid_to); null bounds are open.
OWNERS: Mapping[str, pl.DataType] = {
    "device_id": pl.String(),
    "owner_id": pl.String(),
    "valid_from": TIME,
    "valid_to": TIME,
}

# One row per device and epoch, in canonical order (device_id, epoch; byte order): RESULTS
# with the owner, and the crediting incidents joined by ";" (null when none).
SNAPSHOT_ROWS: Mapping[str, pl.DataType] = {
    **DEVICE_EPOCH_KEY,
    "owner_id": pl.String(),
    **{k: v for k, v in RESULTS.items() if k not in DEVICE_EPOCH_KEY},
    "crediting_incidents": pl.String(),
}

SUPPLIERS: Mapping[str, pl.DataType] = {
    "owner_id": pl.String(),
    "reward": pl.Int64(),
    "devices": pl.Int64(),
    "eligible_device_epochs": pl.Int64(),
}

EPOCH_TOTALS: Mapping[str, pl.DataType] = {
    "epoch": pl.Int64(),
    "pool": pl.Int64(),
    "paid": pl.Int64(),
    "unassigned": pl.Int64(),
    "eligible_devices": pl.Int64(),
}


def owners_at_epochs(grid: pl.DataFrame, owners: pl.DataFrame, epoch_length_us: int) -> pl.Series:
    """The owner of each (device_id, epoch_start) row of `grid`, in `grid`'s order.

    The owner is the one of record at the epoch start; a device first registered during
    the epoch belongs to its first owner. A device with neither has no owner (null).
    Devices with one version (nearly all) take a hash join; the rest an as-of join.
    """
    check_frame(owners, OWNERS, "owners")
    versions = owners.with_columns(pl.col("valid_from").fill_null(pl.lit(0).cast(TIME)))
    single = versions.filter(pl.len().over("device_id") == 1)
    keyed = grid.select("device_id", "epoch_start").with_row_index("_row")
    epoch_end = pl.col("epoch_start") + pl.duration(microseconds=epoch_length_us)
    simple = keyed.join(single, on="device_id", how="inner").select(
        "_row",
        pl.when(
            (
                (pl.col("valid_from") <= pl.col("epoch_start"))
                & (pl.col("valid_to").is_null() | (pl.col("valid_to") > pl.col("epoch_start")))
            )
            | ((pl.col("valid_from") > pl.col("epoch_start")) & (pl.col("valid_from") < epoch_end))
        )
        .then("owner_id")
        .alias("owner_id"),
    )
    several = versions.filter(pl.len().over("device_id") > 1).sort("valid_from")
    rest = keyed.join(several.select("device_id").unique(), on="device_id", how="semi").sort(
        "epoch_start"
    )
    before = rest.join_asof(
        several,
        left_on="epoch_start",
        right_on="valid_from",
        by="device_id",
        strategy="backward",
        check_sortedness=False,
    ).select(
        "_row",
        pl.when(pl.col("valid_to").is_null() | (pl.col("valid_to") > pl.col("epoch_start")))
        .then("owner_id")
        .alias("owner_id"),
    )
    after = rest.join_asof(
        several.select("device_id", "valid_from", pl.col("owner_id").alias("first_owner")),
        left_on="epoch_start",
        right_on="valid_from",
        by="device_id",
        strategy="forward",
        check_sortedness=False,
    ).select("_row", pl.when(pl.col("valid_from") < epoch_end).then("first_owner").alias("f"))
    multi = before.join(after, on="_row").select(
        "_row", pl.coalesce("owner_id", "f").alias("owner_id")
    )
    found = pl.concat([simple, multi])
    return (
        keyed.select("_row").join(found, on="_row", how="left").sort("_row").get_column("owner_id")
    )


def snapshot_rows(
    results: pl.DataFrame,
    owners: pl.DataFrame,
    *,
    epochs: range,
    epoch_length_us: int,
) -> pl.DataFrame:
    """The canonical device-epoch rows of `results` for `epochs`, with owners attached."""
    check_frame(results, RESULTS, "results")
    chosen = results.filter(pl.col("epoch").is_between(epochs.start, epochs.stop - 1))
    chosen = chosen.with_columns(owner_id=owners_at_epochs(chosen, owners, epoch_length_us))
    return (
        chosen.with_columns(
            crediting_incidents=pl.when(pl.col("crediting_incidents").list.len() > 0).then(
                pl.col("crediting_incidents").list.sort().list.join(";")
            )
        )
        .select(list(SNAPSHOT_ROWS))
        .sort("device_id", "epoch")
    )


def supplier_totals(rows: pl.DataFrame) -> pl.DataFrame:
    """Per owner: reward, devices and eligible device-epochs; sorted by owner_id.

    Every owner with a device in the snapshot has a row, also when it earned nothing, so
    that a supplier can prove a zero as well. Rows without an owner are left out (see
    `epoch_totals`, column unassigned).
    """
    return (
        rows.filter(pl.col("owner_id").is_not_null())
        .group_by("owner_id")
        .agg(
            pl.col("reward").sum().cast(pl.Int64),
            pl.col("device_id").n_unique().cast(pl.Int64).alias("devices"),
            pl.col("eligible").sum().cast(pl.Int64).alias("eligible_device_epochs"),
        )
        .sort("owner_id")
        .select(list(SUPPLIERS))
    )


def epoch_totals(rows: pl.DataFrame, epochs: range, pool_per_epoch: int) -> pl.DataFrame:
    """Per epoch of the snapshot: pool, paid, paid to devices with no owner, eligible count.

    `paid` equals `pool` for every epoch with an eligible device of non-zero weight.
    """
    frame = pl.DataFrame({"epoch": list(epochs)}, schema={"epoch": pl.Int64})
    sums = rows.group_by("epoch").agg(
        pl.col("reward").sum().cast(pl.Int64).alias("paid"),
        pl.col("reward")
        .filter(pl.col("owner_id").is_null())
        .sum()
        .cast(pl.Int64)
        .alias("unassigned"),
        pl.col("eligible").sum().cast(pl.Int64).alias("eligible_devices"),
    )
    return (
        frame.join(sums, on="epoch", how="left")
        .with_columns(
            pl.lit(pool_per_epoch, dtype=pl.Int64).alias("pool"),
            pl.col("paid", "unassigned", "eligible_devices").fill_null(0),
        )
        .select(list(EPOCH_TOTALS))
        .sort("epoch")
    )


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
    table = export_rows(rows, decimals)
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


def content_hash(data: bytes) -> str:
    """Hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


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


def payout_leaves(suppliers: pl.DataFrame, season: str, version: int) -> list[Payout]:
    """The Merkle leaves of a snapshot: one per supplier."""
    return [
        Payout(owner_id=owner, season=season, version=version, amount=amount)
        for owner, amount in suppliers.select("owner_id", "reward").iter_rows()
    ]


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


DIFF_KEYS = ("device_id", "epoch")


def diff_rows(before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
    """Device-epochs whose eligibility, reward or owner differ between two snapshots
    (a row present in only one counts as ineligible with no reward in the other)."""
    keep = ["device_id", "epoch", "owner_id", "eligible", "reason", "reward", "uptime_ratio"]
    joined = before.select(keep).join(
        after.select(keep), on=list(DIFF_KEYS), how="full", coalesce=True, suffix="_after"
    )
    joined = joined.rename({c: f"{c}_before" for c in keep if c not in DIFF_KEYS}).with_columns(
        pl.col("eligible_before", "eligible_after").fill_null(False),
        pl.col("reward_before", "reward_after").fill_null(0),
    )
    changed = (
        (pl.col("eligible_before") != pl.col("eligible_after"))
        | (pl.col("reward_before") != pl.col("reward_after"))
        | pl.col("owner_id_before").ne_missing(pl.col("owner_id_after"))
    )
    return (
        joined.filter(changed)
        .with_columns(delta=pl.col("reward_after") - pl.col("reward_before"))
        .select(
            "device_id",
            "epoch",
            "owner_id_before",
            "owner_id_after",
            "eligible_before",
            "eligible_after",
            "reason_before",
            "reason_after",
            "uptime_ratio_before",
            "uptime_ratio_after",
            "reward_before",
            "reward_after",
            "delta",
        )
        .sort("device_id", "epoch")
    )


def diff_suppliers(before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
    """Per supplier in either snapshot: reward before and after and the delta, for those
    whose reward changed; sorted by owner_id."""
    joined = (
        before.select("owner_id", pl.col("reward").alias("reward_before"))
        .join(
            after.select("owner_id", pl.col("reward").alias("reward_after")),
            on="owner_id",
            how="full",
            coalesce=True,
        )
        .with_columns(pl.col("reward_before", "reward_after").fill_null(0))
        .with_columns(delta=pl.col("reward_after") - pl.col("reward_before"))
    )
    return joined.filter(pl.col("delta") != 0).sort("owner_id")


def adjustments(paid: pl.DataFrame, due: pl.DataFrame) -> pl.DataFrame:
    """What finance settles per supplier when `due` replaces `paid`: a positive amount is
    owed to the supplier, a negative one was overpaid."""
    return diff_suppliers(paid, due).select(
        "owner_id",
        pl.col("reward_before").alias("paid"),
        pl.col("reward_after").alias("due"),
        pl.col("delta").alias("adjustment"),
        pl.when(pl.col("delta") > 0)
        .then(pl.lit("owed"))
        .otherwise(pl.lit("overpaid"))
        .alias("direction"),
    )


@dataclass(frozen=True)
class DiffSummary:
    """The headline of a diff between two snapshots."""

    device_epochs_changed: int
    devices_changed: int
    device_epochs_regained: int  # ineligible before, eligible after
    device_epochs_lost: int
    devices_regained: int
    suppliers_changed: int
    suppliers_gaining: int
    suppliers_losing: int
    moved: int  # base units that changed hands: the sum of the positive supplier deltas
    largest: list[tuple[str, int, int, int]]  # (owner_id, before, after, delta)


def summarize(rows: pl.DataFrame, suppliers: pl.DataFrame, largest: int = 5) -> DiffSummary:
    """The summary of `diff_rows` and `diff_suppliers` output."""
    regained = rows.filter(~pl.col("eligible_before") & pl.col("eligible_after"))
    lost = rows.filter(pl.col("eligible_before") & ~pl.col("eligible_after"))
    top = (
        suppliers.with_columns(size=pl.col("delta").abs())
        .sort(["size", "owner_id"], descending=[True, False])
        .head(largest)
        .select("owner_id", "reward_before", "reward_after", "delta")
    )
    return DiffSummary(
        device_epochs_changed=rows.height,
        devices_changed=rows.get_column("device_id").n_unique(),
        device_epochs_regained=regained.height,
        device_epochs_lost=lost.height,
        devices_regained=regained.get_column("device_id").n_unique(),
        suppliers_changed=suppliers.height,
        suppliers_gaining=suppliers.filter(pl.col("delta") > 0).height,
        suppliers_losing=suppliers.filter(pl.col("delta") < 0).height,
        moved=int(suppliers.get_column("delta").clip(lower_bound=0).sum()),
        largest=[(str(o), int(b), int(a), int(d)) for o, b, a, d in top.iter_rows()],
    )


def closed_epochs(
    policy: SeasonPolicy, now: datetime, settlement_us: int, *, watermark: datetime | None
) -> range:
    """The epochs closed and settled (DESIGN 10): those whose end plus `settlement_us` is
    at or before both `now` and `watermark`, the latest observed_at of the ingested feed
    (None: nothing ingested, nothing closed). The wall clock alone never closes an epoch,
    so a feed outage does not snapshot epochs it left empty. range(0, k), possibly empty."""
    if watermark is None:
        return range(0)
    horizon = min(to_us(now), to_us(watermark))
    elapsed = horizon - to_us(policy.start) - settlement_us
    return range(max(0, min(policy.epoch_count, elapsed // policy.epoch_length_us)))


def parse_epoch_range(text: str, epoch_count: int) -> range:
    """'A:B' (both included) or 'A' as a range of epochs; ValueError naming the problem."""
    first, _, last = text.partition(":")
    try:
        a = int(first)
        b = int(last) if last else a
    except ValueError:
        raise ValueError(f"{text!r}: expected A:B, epoch numbers from 0, both included") from None
    if not 0 <= a <= b < epoch_count:
        raise ValueError(
            f"{text!r}: the season has epochs 0 to {epoch_count - 1}, and A must not exceed B"
        )
    return range(a, b + 1)
