"""The eligibility view: every device-epoch of a season so far, with its owner and the
reasons in words, split into owner buckets so one supplier's rows are one small read.

Computing eligibility takes tens of milliseconds even for a handful of devices and tens of
seconds for a 600,000-device fleet, far too slow per request. So a job computes the whole
season at once (the same rules as a snapshot), and the API reads the one bucket that holds
the asking supplier. A bucket is a pure function of the owner id (CRC-32 of its UTF-8
bytes), stable across processes and versions.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import polars as pl

from rewards.core.frames import TIME, to_us
from rewards.core.policy import SeasonPolicy
from rewards.core.snapshots import SNAPSHOT_ROWS

# The view's rows: a snapshot's device-epoch rows without the reward (a reward is only
# known once the whole season's pool is split; suppliers read it per published snapshot)
# and with whether the epoch was still running when the view was computed.
VIEW_ROWS: Mapping[str, pl.DataType] = {
    **{k: v for k, v in SNAPSHOT_ROWS.items() if k != "reward"},
    "in_progress": pl.Boolean(),
}
TARGET_BUCKET_ROWS = 2_000
MAX_BUCKETS = 16_384


def bucket_of(owner_id: str, buckets: int) -> int:
    """The bucket that holds `owner_id`'s rows."""
    return zlib.crc32(owner_id.encode("utf-8")) % buckets


def bucket_count(rows: int) -> int:
    """Buckets for a view of `rows` rows: about TARGET_BUCKET_ROWS rows each."""
    return max(1, min(MAX_BUCKETS, rows // TARGET_BUCKET_ROWS))


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


def _with_buckets(rows: pl.DataFrame, count: int) -> pl.DataFrame:
    owners = rows.get_column("owner_id").unique()
    numbers = pl.DataFrame(
        {"owner_id": owners, "bucket": [bucket_of(o, count) for o in owners]},
        schema={"owner_id": pl.String(), "bucket": pl.Int64()},
    )
    return rows.join(numbers, on="owner_id", how="left", maintain_order="left")


def buckets(rows: pl.DataFrame, count: int) -> Iterator[tuple[int, pl.DataFrame]]:
    """(bucket, its rows) for every non-empty bucket, in bucket order; rows keep their
    order within a bucket."""
    keyed = _with_buckets(rows, count)
    for (number,), part in sorted(
        keyed.partition_by("bucket", as_dict=True, maintain_order=True).items()
    ):
        yield int(number), part.drop("bucket")


def stored_buckets(
    rows: pl.DataFrame, count: int, policy: SeasonPolicy, chunk_rows: int = 1_000_000
) -> Iterator[tuple[int, pl.DataFrame]]:
    """`buckets` of `stored_rows(rows)`, made a run of buckets at a time so that only about
    `chunk_rows` rows of explanations are in memory at once."""
    keyed = _with_buckets(rows, count)
    step = max(1, count * chunk_rows // max(1, rows.height))
    for low in range(0, count, step):
        chunk = keyed.filter(pl.col("bucket").is_between(low, low + step - 1))
        if chunk.is_empty():
            continue
        stored = stored_rows(chunk.drop("bucket"), policy).with_columns(chunk["bucket"])
        for (number,), part in sorted(
            stored.partition_by("bucket", as_dict=True, maintain_order=True).items()
        ):
            yield int(number), part.drop("bucket")


def _duration(seconds: float) -> str:
    """'3 h 12 min', '45 min', '20 s': whole minutes above a minute, rounded down."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    hours, minutes = divmod(whole // 60, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.1f}".rstrip("0").rstrip(".") + "%"


def explain(row: Mapping[str, Any], policy: SeasonPolicy) -> str:
    """One device-epoch's outcome in words, from its VIEW_ROWS fields."""
    length = policy.epoch_length_us / 1_000_000
    needed = _percent(float(policy.min_uptime_ratio))
    counted = row["online_s"] + row["bridged_s"] + row["credited_s"]
    so_far = " so far (the epoch is still running)" if row["in_progress"] else ""
    if row["reason"] == "SUSPENDED":
        return "Not eligible: the device was suspended at the start of the epoch."
    if row["reason"] == "NO_HEARTBEATS":
        return f"Not eligible: no heartbeats counted in this epoch{so_far}."
    parts = [f"online {_duration(row['online_s'])}"]
    if row["bridged_s"]:
        used = row["bridges_used"]
        parts.append(
            f"{_duration(row['bridged_s'])} of short gaps bridged "
            f"({used} {'gap' if used == 1 else 'gaps'})"
        )
    if row["credited_s"]:
        parts.append(
            f"{_duration(row['credited_s'])} credited by incident "
            + ", ".join(str(row["crediting_incidents"] or "").split(";"))
        )
    summary = (
        f"{_duration(counted)} counted of {_duration(length)}{so_far} "
        f"({_percent(row['uptime_ratio'])}; {needed} needed): " + ", ".join(parts)
    )
    if row["reason"] == "ELIGIBLE":
        return f"Eligible: {summary}."
    words = [f"Not eligible: {summary}; {_duration(row['shortfall_s'])} short."]
    if row["longest_uncounted_gap_s"]:
        words.append(f"Longest uncounted gap: {_duration(row['longest_uncounted_gap_s'])}.")
    if row["bridges_denied"]:
        denied = row["bridges_denied"]
        words.append(
            f"{denied} short {'gap was' if denied == 1 else 'gaps were'} not bridged: at most "
            f"{policy.max_bridges_per_epoch} per epoch."
        )
    return " ".join(words)


def _duration_expr(seconds: pl.Expr) -> pl.Expr:
    """`_duration` for a column."""
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


def _percent_expr(ratio: pl.Expr) -> pl.Expr:
    """`_percent` for a column."""
    text = pl.format("{}", (ratio * 100).round(1))
    return text.str.strip_chars_end("0").str.strip_chars_end(".") + "%"


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
    bridged = pl.when(c("bridged_s") != 0).then(
        ", "
        + _duration_expr(c("bridged_s"))
        + " of short gaps bridged ("
        + c("bridges_used").cast(pl.String)
        + plural
    )
    credited = pl.when(c("credited_s") != 0).then(
        ", "
        + _duration_expr(c("credited_s"))
        + " credited by incident "
        + c("crediting_incidents").fill_null("").str.replace_all(";", ", ", literal=True)
    )
    summary = (
        _duration_expr(counted)
        + f" counted of {_duration(policy.epoch_length_us / 1_000_000)}"
        + so_far
        + " ("
        + _percent_expr(c("uptime_ratio"))
        + f"; {_percent(float(policy.min_uptime_ratio))} needed): online "
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
    "device_id",
    "epoch",
    "epoch_start",
    "in_progress",
    "online_s",
    "bridged_s",
    "credited_s",
    "uptime_ratio",
    "eligible",
    "reason",
    "shortfall_s",
    "bridges_used",
    "bridges_denied",
    "longest_uncounted_gap_s",
    "crediting_incidents",
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
