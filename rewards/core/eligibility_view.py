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
from typing import Any, TypeVar

import polars as pl

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

_Ratio = TypeVar("_Ratio", float, pl.Expr)


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


def duration_words(seconds: float) -> str:
    """'3 h 12 min', '45 min', '20 s': whole minutes above a minute, rounded down."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    hours, minutes = divmod(whole // 60, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def tenths_of_percent(ratio: _Ratio) -> _Ratio:
    """A ratio in whole tenths of a percent, rounded half up: floor(ratio x 1000 + 0.5) in
    float64 arithmetic (0.0005 is 1, 0.00049 is 0). The one rounding behind every
    percentage in words, for a number and for a column alike (the same operations, so the
    same result on every input). Ratios are not negative."""
    return (ratio * 1000 + 0.5) // 1


def percent_words(ratio: float) -> str:
    """'97.2%', '90%': the ratio in tenths of a percent (`tenths_of_percent`)."""
    whole, tenth = divmod(int(tenths_of_percent(ratio)), 10)
    return f"{whole}.{tenth}%" if tenth else f"{whole}%"


def explain(row: Mapping[str, Any], policy: SeasonPolicy) -> str:
    """One device-epoch's outcome in words, from its VIEW_ROWS fields."""
    length = policy.epoch_length_us / 1_000_000
    needed = percent_words(float(policy.min_uptime_ratio))
    counted = row["online_s"] + row["bridged_s"] + row["credited_s"]
    so_far = " so far (the epoch is still running)" if row["in_progress"] else ""
    if row["reason"] == "SUSPENDED":
        return "Not eligible: the device was suspended at the start of the epoch."
    if row["reason"] == "NO_HEARTBEATS":
        return f"Not eligible: no heartbeats counted in this epoch{so_far}."
    parts = [f"online {duration_words(row['online_s'])}"]
    if row["bridged_s"]:
        used = row["bridges_used"]
        # bridges count in the epoch where their gap begins; time bridged here with none
        # counted is a gap begun in the previous epoch
        which = f"{used} {'gap' if used == 1 else 'gaps'}" if used else "begun the epoch before"
        parts.append(f"{duration_words(row['bridged_s'])} of short gaps bridged ({which})")
    if row["credited_s"]:
        parts.append(
            f"{duration_words(row['credited_s'])} credited by incident "
            + ", ".join(str(row["crediting_incidents"] or "").split(";"))
        )
    summary = (
        f"{duration_words(counted)} counted of {duration_words(length)}{so_far} "
        f"({percent_words(row['uptime_ratio'])}; {needed} needed): " + ", ".join(parts)
    )
    if row["reason"] == "ELIGIBLE":
        return f"Eligible: {summary}."
    words = [f"Not eligible: {summary}; {duration_words(row['shortfall_s'])} short."]
    if row["longest_uncounted_gap_s"]:
        words.append(f"Longest uncounted gap: {duration_words(row['longest_uncounted_gap_s'])}.")
    if row["bridges_denied"]:
        denied = row["bridges_denied"]
        words.append(
            f"{denied} short {'gap was' if denied == 1 else 'gaps were'} not bridged: at most "
            f"{policy.max_bridges_per_epoch} per epoch."
        )
    return " ".join(words)


def _duration_expr(seconds: pl.Expr) -> pl.Expr:
    """`duration_words` for a column."""
    whole = seconds.cast(pl.Int64)
    hours, minutes = (whole // 3600).cast(pl.String), (whole // 60 % 60).cast(pl.String)
    return (
        pl.when(whole < 60)
        .then(whole.cast(pl.String) + " s")
        .when(whole < 3600)
        .then(minutes + " min")
        .when(whole // 60 % 60 == 0)
        .then(hours + " h")
        .otherwise(hours + " h " + minutes + " min")
    )


def percent_words_expr(ratio: pl.Expr) -> pl.Expr:
    """`percent_words` for a column."""
    tenths = tenths_of_percent(ratio).cast(pl.Int64)
    whole, tenth = (tenths // 10).cast(pl.String), tenths % 10
    return (
        pl.when(tenth == 0).then(whole + "%").otherwise(whole + "." + tenth.cast(pl.String) + "%")
    )


def explanation_expr(policy: SeasonPolicy) -> pl.Expr:
    """`explain` as one expression over VIEW_ROWS columns: the same words for millions of
    rows at once (the view stores them; a request only reads them)."""
    c = pl.col
    counted = c("online_s") + c("bridged_s") + c("credited_s")
    so_far = (
        pl.when(c("in_progress"))
        .then(pl.lit(" so far (the epoch is still running)"))
        .otherwise(pl.lit(""))
    )
    plural = pl.when(c("bridges_used") == 1).then(pl.lit(" gap)")).otherwise(pl.lit(" gaps)"))
    which = (
        pl.when(c("bridges_used") == 0)
        .then(pl.lit("begun the epoch before)"))
        .otherwise(c("bridges_used").cast(pl.String) + plural)
    )
    bridged = pl.when(c("bridged_s") != 0).then(
        ", " + _duration_expr(c("bridged_s")) + " of short gaps bridged (" + which
    )
    credited = pl.when(c("credited_s") != 0).then(
        ", "
        + _duration_expr(c("credited_s"))
        + " credited by incident "
        + c("crediting_incidents").fill_null("").str.replace_all(";", ", ", literal=True)
    )
    summary = (
        _duration_expr(counted)
        + f" counted of {duration_words(policy.epoch_length_us / 1_000_000)}"
        + so_far
        + " ("
        + percent_words_expr(c("uptime_ratio"))
        + f"; {percent_words(float(policy.min_uptime_ratio))} needed): online "
        + _duration_expr(c("online_s"))
        + bridged.otherwise(pl.lit(""))
        + credited.otherwise(pl.lit(""))
    )
    gap = pl.when(c("longest_uncounted_gap_s") != 0).then(
        " Longest uncounted gap: " + _duration_expr(c("longest_uncounted_gap_s")) + "."
    )
    denied = pl.when(c("bridges_denied") != 0).then(
        " "
        + c("bridges_denied").cast(pl.String)
        + pl.when(c("bridges_denied") == 1)
        .then(pl.lit(" short gap was"))
        .otherwise(pl.lit(" short gaps were"))
        + f" not bridged: at most {policy.max_bridges_per_epoch} per epoch."
    )
    below = (
        "Not eligible: "
        + summary
        + "; "
        + _duration_expr(c("shortfall_s"))
        + " short."
        + gap.otherwise(pl.lit(""))
        + denied.otherwise(pl.lit(""))
    )
    return (
        pl.when(c("reason") == "SUSPENDED")
        .then(pl.lit("Not eligible: the device was suspended at the start of the epoch."))
        .when(c("reason") == "NO_HEARTBEATS")
        .then("Not eligible: no heartbeats counted in this epoch" + so_far + ".")
        .when(c("reason") == "ELIGIBLE")
        .then("Eligible: " + summary + ".")
        .otherwise(below)
        .alias("explanation")
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
