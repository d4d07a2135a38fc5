"""Device-epoch results from intervals, policy, incidents and device metadata (DESIGN 4).

`device_epochs` is the composition; each step is a pure function of its own module. Every
device known (from intervals or the device metadata) gets a row for every epoch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from rewards.core.allocation import allocate_in_order
from rewards.core.eligibility import (
    REASONS,
    US,
    eligibility,
    exact_div,
    reasons,
    shortfall_s,
    uptime_ratio,
)
from rewards.core.epochs import clip_to_epochs, same_group_as_previous
from rewards.core.frames import (
    DEVICES,
    INCIDENT_VERSIONS,
    INCIDENTS,
    INTERVALS,
    RESULTS,
    check_frame,
    empty,
    sorted_by,
    to_us,
)
from rewards.core.gaps import bridge_gaps, gaps
from rewards.core.incidents import credited_windows, union_windows
from rewards.core.policy import SeasonPolicy
from rewards.core.scatter import Grid, cell_counts, clipped_max, clipped_sums, epoch_major
from rewards.core.tiers import epoch_starts, tiers_and_suspensions


def _encode(
    frame: pl.DataFrame, names: pl.DataFrame, runs: pl.Series | None = None
) -> pl.DataFrame:
    """`frame` with device_id replaced by its integer code (unknown devices dropped). The
    ids are looked up once per run of equal ids (`runs`: the column's `rle()`, when the
    caller has it), so input sorted by device costs one lookup a device, not one a row."""
    runs = frame.get_column("device_id").rle() if runs is None else runs
    codes = (
        runs.struct.unnest()
        .join(names, left_on="value", right_on="device_id", how="left", maintain_order="left")
        .get_column("code")
    )
    lengths = runs.struct.field("len").to_numpy()
    coded = frame.with_columns(
        device_id=pl.Series(np.repeat(codes.fill_null(-1).cast(pl.Int64).to_numpy(), lengths))
    )
    return coded.filter(pl.col("device_id") >= 0).with_columns(pl.col("device_id").cast(pl.UInt32))


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

    DESIGN 4's steps in order: the counted time of each device-epoch (gaps, bridges, credit,
    clipped per epoch: `_counted_per_epoch`), then eligibility and the reason (`eligibility`,
    `reasons`), then rewards, then the reported columns (`_as_results`).
    """
    table, tiers, names = _assessed(intervals, policy, incidents, devices, incident_versions)
    rewards = _rewards(
        table.get_column("counted_us").to_numpy(),
        tiers,
        table.get_column("eligible").to_numpy(),
        policy,
        names.height,
    )
    del tiers
    return _as_results(table.with_columns(reward=pl.Series(rewards)), names, policy)


def unpaid_device_epochs(
    intervals: pl.DataFrame,
    policy: SeasonPolicy,
    *,
    incidents: pl.DataFrame | None = None,
    devices: pl.DataFrame | None = None,
    incident_versions: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`device_epochs` of some devices (a shard) up to the rewards: RESULTS with a reward
    of 0, and the weight (epoch, device_id, weight) of each eligible device-epoch, for the
    allocation over every shard (core/shard_allocation.py)."""
    table, tiers, names = _assessed(intervals, policy, incidents, devices, incident_versions)
    count = names.height
    keys = np.flatnonzero(table.get_column("eligible").to_numpy())
    weights = pl.DataFrame(
        {
            "epoch": keys // count,
            "code": (keys % count).astype(np.uint32),
            "counted": table.get_column("counted_us").to_numpy()[keys],
            "tier": tiers[keys],
        }
    ).select(
        "epoch",
        pl.lit(names.get_column("device_id")).gather(pl.col("code")).alias("device_id"),
        (pl.col("counted").cast(pl.Int128) * pl.col("tier")).alias("weight"),
    )
    del tiers
    unpaid = table.with_columns(reward=pl.lit(0, pl.Int64))
    return _as_results(unpaid, names, policy), weights


def _assessed(
    intervals: pl.DataFrame,
    policy: SeasonPolicy,
    incidents: pl.DataFrame | None,
    devices: pl.DataFrame | None,
    incident_versions: pl.DataFrame | None,
) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame]:
    """The dense working table up to eligibility and the reason, the tier weights (both
    epoch-major over device codes) and the codes' device ids (code, device_id)."""
    check_frame(intervals, INTERVALS, "intervals")
    incidents = empty(INCIDENTS) if incidents is None else incidents
    devices = empty(DEVICES) if devices is None else devices
    check_frame(devices, DEVICES, "devices")
    check_frame(incidents, INCIDENTS, "incidents")
    if incident_versions is not None:
        check_frame(incident_versions, INCIDENT_VERSIONS, "incident versions")

    # Devices are worked on as dense integer codes given in byte order of their ids, so
    # joins, sorts and windows run on integers and allocation ties still break by id.
    runs = intervals.get_column("device_id").rle()  # one run a device in sorted input
    names = (
        pl.concat([runs.struct.field("value"), devices.get_column("device_id")])
        .unique()
        .sort()
        .to_frame("device_id")
        .with_row_index("code")
    )
    count = names.height
    # The encoded inputs are handed over unnamed so the step can let them go once used.
    table = _counted_per_epoch(
        _encode(intervals.select(list(INTERVALS)), names, runs).with_columns(
            pl.col("start").cast(pl.Int64), pl.col("end").cast(pl.Int64)
        ),
        _encode_scopes(incidents, names),
        None if incident_versions is None else _encode(incident_versions, names),
        policy,
        count,
    )
    tiers, suspended = tiers_and_suspensions(_encode(devices, names), policy, count)
    counted = pl.col("counted_us")
    table = table.with_columns(
        counted_us=pl.col("online_us") + pl.col("bridged_us") + pl.col("credited_us"),
        suspended=pl.Series(suspended),
    ).with_columns(
        eligible=eligibility(counted, pl.col("suspended"), policy),
        reason=reasons(counted, pl.col("suspended"), policy),
    )
    return table, tiers, names


def _counted_per_epoch(
    iv: pl.DataFrame,
    incidents: pl.DataFrame,
    versions: pl.DataFrame | None,
    policy: SeasonPolicy,
    count: int,
) -> pl.DataFrame:
    """Per device-epoch, dense and epoch-major (row `key` = epoch x count + device code):
    online, bridged and credited µs, bridges used and denied, the longest uncounted stretch
    and the crediting incidents (DESIGN 4.3-4.6, up to the clip to epochs).

    Every (epoch, device) has one integer key, epoch-major: key order is the output order
    and per-key values scatter into dense arrays instead of being joined. Intermediates are
    let go as soon as used: at full scale that lowers the peak memory by gigabytes, which
    is why the caller hands the encoded inputs over without keeping them.
    """
    iv = sorted_by(iv, "device_id", "start")
    marked = bridge_gaps(gaps(iv), policy)
    iv = iv.select("device_id", "start", "end")  # the identifiers are no longer needed
    windows = credited_windows(marked, incidents, policy, versions)
    del incidents, versions
    grid = Grid(to_us(policy.start), policy.epoch_length_us, policy.epoch_count, count)
    size = grid.size
    sums = _sums_per_key(iv, marked, windows, grid)
    del iv

    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            key=pl.col("epoch").cast(pl.Int64) * count + pl.col("device_id").cast(pl.Int64)
        )

    # bridges used and denied per cell: a count of the flagged gaps' cells
    in_season = marked.filter(pl.col("epoch").is_not_null())
    used, denied = (
        cell_counts(
            in_season.filter(flag).get_column("device_id").to_numpy(),
            in_season.filter(flag).get_column("epoch").to_numpy(),
            grid,
        )
        for flag in ("bridged", "denied")
    )
    del in_season
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
    columns = {**sums, "bridges_used": used, "bridges_denied": denied}
    order = ("online_us", "bridged_us", "credited_us", "bridges_used", "bridges_denied")
    table = pl.DataFrame(
        {name: epoch_major(columns[name], grid) for name in (*order, "longest_uncounted_us")}
    )
    del sums, marked, windows, used, denied, columns
    # each key's incidents, gathered from the few keys that have any (a null elsewhere)
    row = np.full(size, -1, dtype=np.int64)
    row[attributions.get_column("key").to_numpy()] = np.arange(attributions.height)
    credited_by = attributions.get_column("crediting_incidents").gather(
        pl.Series(row).set(pl.Series(row) < 0, None)
    )
    return table.with_columns(crediting_incidents=credited_by)


def _as_results(table: pl.DataFrame, names: pl.DataFrame, policy: SeasonPolicy) -> pl.DataFrame:
    """The dense working table (epoch-major rows) as RESULTS: ids and epoch starts back in,
    times in seconds, shortfall and uptime ratio (DESIGN 4.6). The output is made a column
    at a time, each working column dropped as soon as it is used, so the dense working
    table and the output never coexist in full."""
    count = names.height
    table = (
        table.with_row_index("key")
        .with_columns(
            epoch=(pl.col("key") // count).cast(pl.Int64),
            device_id=(pl.col("key") % count).cast(pl.UInt32),
        )
        .drop("key")
    )
    counted = pl.col("counted_us")
    table = table.with_columns(
        shortfall_s(counted, policy).alias("shortfall_s"),
        uptime_ratio(counted, policy).alias("uptime_ratio"),
    ).drop("counted_us", "suspended")
    for column in ("online", "bridged", "credited"):
        table = table.with_columns(exact_div(pl.col(f"{column}_us"), US).alias(f"{column}_s")).drop(
            f"{column}_us"
        )
    table = table.with_columns(
        exact_div(pl.col("longest_uncounted_us"), US).alias("longest_uncounted_gap_s")
    ).drop("longest_uncounted_us")
    starts = epoch_starts(policy).get_column("epoch_start")
    return table.with_columns(
        pl.lit(names.get_column("device_id")).gather(pl.col("device_id")).alias("device_id"),
        pl.lit(starts).gather(pl.col("epoch")).alias("epoch_start"),
        pl.col("crediting_incidents").fill_null(pl.lit([], pl.List(pl.String))),
    ).select(list(RESULTS))


def _sums_per_key(
    iv: pl.DataFrame, marked: pl.DataFrame, windows: pl.DataFrame, grid: Grid
) -> dict[str, np.ndarray]:
    """Per (device, epoch) cell, dense and device-major: online, bridged and credited µs
    and the longest uncounted stretch. Each kind of counted time is scattered into its
    cells (core/scatter.py); the longest stretch is the longest piece of the *uncounted*
    time, known without merging the counted pieces: before a device's first interval,
    after its last, and each gap not bridged minus its credit windows (DESIGN 4.6).
    `iv` is sorted by device and start."""

    def scattered(
        frame: pl.DataFrame, s: str, e: str, into: Callable[..., np.ndarray]
    ) -> np.ndarray:
        columns = (frame.get_column(c).to_numpy() for c in ("device_id", s, e))
        return into(*columns, grid)

    unioned = union_windows(windows)
    found = {
        "online_us": scattered(iv, "start", "end", clipped_sums),
        "bridged_us": scattered(marked.filter("bridged"), "g0", "g1", clipped_sums),
        "credited_us": scattered(unioned, "c0", "c1", clipped_sums),
    }
    device = pl.col("device_id")  # sorted: a device's first and last rows are its edges
    first = (device != device.shift(1)).fill_null(True)
    last = (device != device.shift(-1)).fill_null(True)
    season_end = grid.start + grid.epochs * grid.length
    uncounted = pl.concat(
        [
            iv.filter(first).select(
                "device_id", pl.lit(grid.start).alias("s"), pl.col("start").alias("e")
            ),
            iv.filter(last).select(
                "device_id", pl.col("end").alias("s"), pl.lit(season_end).alias("e")
            ),
            _uncredited(marked.filter(~pl.col("bridged")).select("device_id", "g0", "g1"), unioned),
        ]
    )
    stretch = scattered(uncounted, "s", "e", clipped_max)
    # a device-epoch with nothing counted is one stretch of the whole epoch (also for a
    # device known only from its metadata, which has no pieces at all)
    nothing = (found["online_us"] + found["bridged_us"] + found["credited_us"]) == 0
    stretch[nothing] = grid.length
    found["longest_uncounted_us"] = stretch
    return found


def _uncredited(open_gaps: pl.DataFrame, unioned: pl.DataFrame) -> pl.DataFrame:
    """The parts of each gap not bridged that no credit window covers: device_id, s, e.
    `unioned` holds each gap's disjoint windows (device_id, g0, c0, c1). Only the few
    gaps whose start is a windowed gap's start are looked up (a join of every gap cost
    seconds at fleet scale); the rest are uncounted whole."""
    ordered = unioned.sort("device_id", "g0", "c0")
    first = ~same_group_as_previous("device_id", "g0")
    before = ordered.select(  # from the gap's start, or the window before, to each window
        "device_id",
        pl.when(first).then(pl.col("g0")).otherwise(pl.col("c1").shift(1)).alias("s"),
        pl.col("c0").alias("e"),
    )
    reach = ordered.group_by("device_id", "g0").agg(pl.col("c1").max().alias("reach"))
    maybe = pl.col("g0").is_in(reach.get_column("g0").unique().implode())
    after = (  # from the last window's end (or the gap's start) to the gap's end
        open_gaps.filter(maybe)
        .join(reach, on=["device_id", "g0"], how="left")
        .select(
            "device_id", pl.col("reach").fill_null(pl.col("g0")).alias("s"), pl.col("g1").alias("e")
        )
    )
    whole = open_gaps.filter(~maybe).select(
        "device_id", pl.col("g0").alias("s"), pl.col("g1").alias("e")
    )
    return pl.concat([before, after, whole])


def _rewards(
    counted: np.ndarray,
    tiers: np.ndarray,
    eligible: np.ndarray,
    policy: SeasonPolicy,
    count: int,
) -> np.ndarray:
    """Each key's reward, allocated one epoch at a time (epochs are independent and each
    is a contiguous slice of the epoch-major arrays, so the working set is one epoch)."""
    rewards = np.zeros(counted.shape[0], dtype=np.int64)
    for epoch in range(policy.epoch_count):
        lo = epoch * count
        devices = np.flatnonzero(eligible[lo : lo + count])
        if devices.size == 0:
            continue
        weights = pl.Series(counted[lo + devices]).cast(pl.Int128) * pl.Series(
            tiers[lo + devices]
        ).cast(pl.Int128)
        # devices in code order, which is device_id order: the order ties break in
        paid = allocate_in_order(weights, policy.pool_per_epoch)
        rewards[lo + devices] = paid.to_numpy()
    return rewards


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


__all__ = ["REASONS", "device_epochs", "epoch_payouts", "unpaid_device_epochs"]
