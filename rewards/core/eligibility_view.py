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


def buckets(rows: pl.DataFrame, count: int) -> Iterator[tuple[int, pl.DataFrame]]:
    """(bucket, its rows) for every non-empty bucket, in bucket order."""
    owners = rows.get_column("owner_id").unique()
    numbers = pl.DataFrame(
        {"owner_id": owners, "bucket": [bucket_of(o, count) for o in owners]},
        schema={"owner_id": pl.String(), "bucket": pl.Int64()},
    )
    keyed = rows.join(numbers, on="owner_id", how="left", maintain_order="left")
    for (number,), part in sorted(
        keyed.partition_by("bucket", as_dict=True, maintain_order=True).items()
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
