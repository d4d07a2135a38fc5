"""Device-epoch results from intervals, policy, incidents and device metadata (DESIGN 4).

`device_epochs` is the composition; each step is a pure function of its own module. Every
device known (from intervals or the device metadata) gets a row for every epoch.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from rewards.core.allocation import allocate
from rewards.core.epochs import clip_to_epochs
from rewards.core.frames import (
    DEVICES,
    INCIDENT_VERSIONS,
    INCIDENTS,
    INTERVALS,
    TIME,
    check_frame,
    empty,
    to_us,
)
from rewards.core.gaps import bridge_gaps, gaps
from rewards.core.incidents import credited_windows, union_windows
from rewards.core.policy import SeasonPolicy


def _exact_div(expr: pl.Expr, divisor: int) -> pl.Expr:
    """expr / divisor as a correctly rounded float.

    Polars' float division is not always correctly rounded (77,759,999,999 / 1e6 came out
    as 77759.99999899999); numpy's is IEEE division, so reported seconds read exactly.
    """
    return expr.map_batches(
        lambda s: pl.Series(s.name, np.true_divide(s.cast(pl.Float64).to_numpy(), divisor)),
        return_dtype=pl.Float64,
    )


REASONS = ("SUSPENDED", "ELIGIBLE", "NO_HEARTBEATS", "BELOW_MIN_UPTIME")
US = 1_000_000


def _epochs(policy: SeasonPolicy) -> pl.DataFrame:
    return pl.DataFrame(
        {"epoch": list(range(policy.epoch_count))}, schema={"epoch": pl.Int64}
    ).with_columns(
        epoch_start=pl.lit(policy.start).cast(TIME)
        + pl.duration(microseconds=pl.col("epoch") * policy.epoch_length_us)
    )


def _metadata_at_epoch_start(grid: pl.DataFrame, devices: pl.DataFrame) -> pl.DataFrame:
    """gpu_model and suspended of the version valid at each epoch start (none: null)."""
    versions = (
        devices.select(list(DEVICES))
        .with_columns(pl.col("valid_from").fill_null(pl.lit(0).cast(TIME)))
        .sort("valid_from")
    )
    matched = grid.sort("epoch_start").join_asof(
        versions,
        left_on="epoch_start",
        right_on="valid_from",
        by="device_id",
        strategy="backward",
        check_sortedness=False,  # sorted by valid_from above, hence within each device too
    )
    current = pl.col("valid_to").is_null() | (pl.col("valid_to") > pl.col("epoch_start"))
    return matched.with_columns(
        gpu_model=pl.when(current).then("gpu_model"),
        suspended=pl.when(current).then("suspended").fill_null(False),
    ).drop("valid_from", "valid_to")


def _encode(frame: pl.DataFrame, names: pl.DataFrame) -> pl.DataFrame:
    """`frame` with device_id replaced by its integer code (unknown devices dropped)."""
    coded = frame.join(names, on="device_id", how="inner", maintain_order="left")
    return coded.with_columns(device_id=pl.col("code")).drop("code")


def _encode_scopes(incidents: pl.DataFrame, names: pl.DataFrame) -> pl.DataFrame:
    """Incidents with scope_device_ids as lists of device codes."""
    listed = (
        incidents.select("incident_id", "scope_device_ids")
        .explode("scope_device_ids")
        .join(names, left_on="scope_device_ids", right_on="device_id", how="inner")
        .group_by("incident_id")
        .agg(pl.col("code").alias("codes"))
    )
    return (
        incidents.join(listed, on="incident_id", how="left", maintain_order="left")
        .with_columns(scope_device_ids=pl.col("codes").fill_null(pl.lit([], pl.List(pl.UInt32))))
        .drop("codes")
    )


def device_epochs(
    intervals: pl.DataFrame,
    policy: SeasonPolicy,
    *,
    incidents: pl.DataFrame | None = None,
    devices: pl.DataFrame | None = None,
    incident_versions: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One RESULTS row per known device and season epoch, sorted by epoch then device_id.

    `incidents` must hold confirmed incidents only; `devices` is metadata history (DEVICES);
    `incident_versions` is required when an incident is scoped by agent version.
    """
    check_frame(intervals, INTERVALS, "intervals")
    incidents = empty(INCIDENTS) if incidents is None else incidents
    devices = empty(DEVICES) if devices is None else devices
    check_frame(devices, DEVICES, "devices")
    check_frame(incidents, INCIDENTS, "incidents")
    if incident_versions is not None:
        check_frame(incident_versions, INCIDENT_VERSIONS, "incident versions")

    # Devices are worked on as dense integer codes given in byte order of their ids, so
    # joins, sorts and windows run on integers and allocation ties still break by id.
    names = (
        pl.concat([intervals.select("device_id"), devices.select("device_id")])
        .unique()
        .sort("device_id")
        .with_row_index("code")
    )
    iv = _encode(intervals.select(list(INTERVALS)), names).with_columns(
        pl.col("start").cast(pl.Int64), pl.col("end").cast(pl.Int64)
    )
    devices = _encode(devices, names)
    incidents = _encode_scopes(incidents, names)
    versions = None if incident_versions is None else _encode(incident_versions, names)
    marked = bridge_gaps(gaps(iv), policy)
    windows = credited_windows(marked, incidents, policy, versions)

    def segment(frame: pl.DataFrame, s: str, e: str, kind: str) -> pl.DataFrame:
        return frame.select(
            "device_id", pl.col(s).alias("s"), pl.col(e).alias("e"), pl.lit(kind).alias("kind")
        )

    segments = pl.concat(
        [
            segment(iv, "start", "end", "online"),
            segment(marked.filter("bridged"), "g0", "g1", "bridged"),
            segment(union_windows(windows), "c0", "c1", "credited"),
        ]
    )
    pieces = clip_to_epochs(segments, policy)
    # Every (epoch, device) has one integer key, epoch-major: key order is the output order
    # and per-key values scatter into dense arrays instead of being joined.
    count = names.height
    size = count * policy.epoch_count

    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            key=pl.col("epoch").cast(pl.Int64) * count + pl.col("device_id").cast(pl.Int64)
        )

    def dense(frame: pl.DataFrame, column: str, fill: int | bool, dtype: type) -> np.ndarray:
        out: np.ndarray = np.full(size, fill, dtype=dtype)
        out[frame.get_column("key").to_numpy()] = frame.get_column(column).to_numpy()
        return out

    # One sort and one group-by give each key its counted sums and its longest uncounted
    # stretch (pieces are disjoint; the stretch before a piece starts at the previous
    # piece's end, or at the epoch start for the first).
    start, period = to_us(policy.start), policy.epoch_length_us
    epoch_start = start + (pl.col("key") // count) * period
    length = pl.col("e") - pl.col("s")
    previous_end = (
        pl.when(pl.col("key") == pl.col("key").shift(1))
        .then(pl.col("e").shift(1))
        .otherwise(epoch_start)
    )
    sums = (
        keyed(pieces)
        .sort("key", "s")
        .with_columns(stretch=pl.col("s") - previous_end)
        .group_by("key")
        .agg(
            *(
                length.filter(pl.col("kind") == kind).sum().alias(f"{kind}_us")
                for kind in ("online", "bridged", "credited")
            ),
            pl.max_horizontal(
                pl.col("stretch").max(), epoch_start.first() + period - pl.col("e").max()
            ).alias("longest_uncounted_us"),
        )
    )
    bridges = keyed(
        marked.filter(pl.col("epoch").is_not_null())
        .group_by("device_id", "epoch")
        .agg(pl.col("bridged").sum().alias("used"), pl.col("denied").sum().alias("denied"))
    )
    # Incidents are named in an epoch only where their own window credited time in it.
    attributions = keyed(
        clip_to_epochs(
            windows.select(
                "device_id", pl.col("c0").alias("s"), pl.col("c1").alias("e"), "incident_id"
            ),
            policy,
        )
        .group_by("device_id", "epoch")
        .agg(pl.col("incident_id").unique().sort().alias("crediting_incidents"))
    )
    tiers, suspended = _tiers_and_suspensions(devices, policy, count)
    table = pl.DataFrame(
        {
            "online_us": dense(sums, "online_us", 0, np.int64),
            "bridged_us": dense(sums, "bridged_us", 0, np.int64),
            "credited_us": dense(sums, "credited_us", 0, np.int64),
            "bridges_used": dense(bridges, "used", 0, np.int64),
            "bridges_denied": dense(bridges, "denied", 0, np.int64),
            "longest_uncounted_us": dense(
                sums, "longest_uncounted_us", policy.epoch_length_us, np.int64
            ),
            "tier": tiers,
            "suspended": suspended,
        }
    ).with_row_index("key")
    table = table.with_columns(
        epoch=(pl.col("key") // count).cast(pl.Int64),
        device_id=(pl.col("key") % count).cast(pl.UInt32),
        counted_us=pl.col("online_us") + pl.col("bridged_us") + pl.col("credited_us"),
    )
    ratio = policy.min_uptime_ratio
    # The ratio is exact: counted time (whole µs) qualifies when it reaches the exact
    # threshold ratio x L, i.e. the smallest whole number of µs at or above it.
    threshold_us = -((-ratio.numerator * policy.epoch_length_us) // ratio.denominator)
    reached = pl.col("counted_us") >= threshold_us
    table = table.with_columns(
        eligible=~pl.col("suspended") & reached,
        reason=pl.when(pl.col("suspended"))
        .then(pl.lit("SUSPENDED"))
        .when(reached)
        .then(pl.lit("ELIGIBLE"))
        .when(pl.col("counted_us") == 0)
        .then(pl.lit("NO_HEARTBEATS"))
        .otherwise(pl.lit("BELOW_MIN_UPTIME")),
    )
    weights = table.filter("eligible").select(
        "key",
        "epoch",
        "device_id",
        (pl.col("counted_us").cast(pl.Int128) * pl.col("tier")).alias("weight"),
    )
    rewards = allocate(weights, policy.pool_per_epoch).join(
        weights.select("key", "epoch", "device_id"), on=["epoch", "device_id"]
    )
    table = table.with_columns(reward=pl.Series(dense(rewards, "reward", 0, np.int64)))
    table = table.join(
        attributions.select("key", "crediting_incidents"),
        on="key",
        how="left",
        maintain_order="left",
    )
    epoch_starts = _epochs(policy).get_column("epoch_start")
    return table.select(
        pl.lit(names.get_column("device_id")).gather(pl.col("device_id")).alias("device_id"),
        "epoch",
        pl.lit(epoch_starts).gather(pl.col("epoch")).alias("epoch_start"),
        _exact_div(pl.col("online_us"), US).alias("online_s"),
        _exact_div(pl.col("bridged_us"), US).alias("bridged_s"),
        _exact_div(pl.col("credited_us"), US).alias("credited_s"),
        _exact_div(pl.col("counted_us"), policy.epoch_length_us).alias("uptime_ratio"),
        "eligible",
        "reason",
        "reward",
        "bridges_used",
        "bridges_denied",
        # exact in integers (ratio x L - counted, scaled by the ratio's denominator),
        # then one conversion to seconds
        _exact_div(
            pl.max_horizontal(
                pl.lit(0, pl.Int128),
                pl.lit(ratio.numerator * policy.epoch_length_us, pl.Int128)
                - pl.col("counted_us").cast(pl.Int128) * ratio.denominator,
            ),
            ratio.denominator * US,
        ).alias("shortfall_s"),
        _exact_div(pl.col("longest_uncounted_us"), US).alias("longest_uncounted_gap_s"),
        pl.col("crediting_incidents").fill_null(pl.lit([], pl.List(pl.String))),
    )


def _tiers_and_suspensions(
    devices: pl.DataFrame, policy: SeasonPolicy, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dense arrays (epoch-major keys) of tier weight and suspension at each epoch start."""
    size = count * policy.epoch_count
    default = policy.tier_weights["default"]
    tiers = np.full(size, default, dtype=np.int64)
    suspended = np.zeros(size, dtype=bool)
    if devices.is_empty():
        return tiers, suspended
    grid = devices.select("device_id").unique().join(_epochs(policy), how="cross")
    meta = _metadata_at_epoch_start(grid, devices).with_columns(
        key=pl.col("epoch").cast(pl.Int64) * count + pl.col("device_id").cast(pl.Int64),
        tier=pl.col("gpu_model").replace_strict(
            dict(policy.tier_weights), default=default, return_dtype=pl.Int64
        ),
    )
    keys = meta.get_column("key").to_numpy()
    tiers[keys] = meta.get_column("tier").to_numpy()
    suspended[keys] = meta.get_column("suspended").to_numpy()
    return tiers, suspended


def epoch_payouts(results: pl.DataFrame, policy: SeasonPolicy) -> pl.DataFrame:
    """Per epoch: eligible devices, pool, amount paid, and a note when nothing was paid."""
    return (
        results.group_by("epoch", maintain_order=True)
        .agg(
            pl.col("eligible").sum().alias("eligible_devices"),
            pl.col("reward").sum().alias("paid"),
        )
        .with_columns(
            pool=pl.lit(policy.pool_per_epoch),
            note=pl.when(pl.col("eligible_devices") == 0)
            .then(pl.lit("no eligible device: nothing paid"))
            .when(pl.col("paid") == 0)
            .then(pl.lit("all eligible weights are zero: nothing paid")),
        )
        .sort("epoch")
    )


__all__ = ["REASONS", "device_epochs", "epoch_payouts"]
