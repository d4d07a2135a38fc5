"""What changed between two snapshots (DESIGN 5): per device-epoch, per supplier, and
the adjustments finance pays or claws back when a rerun replaces a paid snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

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


EPOCH_CHANGES: dict[str, pl.DataType] = {
    "epoch": pl.Int64(),
    "eligible_before": pl.Int64(),
    "eligible_after": pl.Int64(),
    "regained": pl.Int64(),
    "lost": pl.Int64(),
    "moved": pl.Int64(),
}


def epoch_changes(rows: pl.DataFrame, before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
    """Per epoch of `before` or `after` (EPOCH_TOTALS, or any frame with epoch and
    eligible_devices): eligible devices before and after, device-epochs regained and lost
    and base units moved (the sum of the positive device-epoch deltas) in `rows`
    (`diff_rows` output); sorted by epoch."""
    counts = (
        before.select("epoch", pl.col("eligible_devices").alias("eligible_before"))
        .join(
            after.select("epoch", pl.col("eligible_devices").alias("eligible_after")),
            on="epoch",
            how="full",
            coalesce=True,
        )
        .with_columns(pl.col("eligible_before", "eligible_after").fill_null(0))
    )
    moves = rows.group_by("epoch").agg(
        (~pl.col("eligible_before") & pl.col("eligible_after")).sum().alias("regained"),
        (pl.col("eligible_before") & ~pl.col("eligible_after")).sum().alias("lost"),
        pl.col("delta").clip(lower_bound=0).sum().alias("moved"),
    )
    return (
        counts.join(moves, on="epoch", how="left")
        .with_columns(pl.col("regained", "lost", "moved").fill_null(0))
        .select(pl.col(name).cast(kind) for name, kind in EPOCH_CHANGES.items())
        .sort("epoch")
    )


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
