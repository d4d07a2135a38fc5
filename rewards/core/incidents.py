"""Incident credit for gaps that were not bridged (DESIGN 4.5)."""

from __future__ import annotations

import polars as pl

from rewards.core.epochs import same_group_as_previous
from rewards.core.frames import INCIDENT_VERSIONS, INCIDENTS, INTERVALS, check_frame
from rewards.core.policy import SeasonPolicy
from rewards.core.scope import covers_expr
from rewards.core.versions import version_key_expr

WINDOWS = {
    "device_id": pl.String(),
    "g0": pl.Int64(),
    "c0": pl.Int64(),
    "c1": pl.Int64(),
    "incident_id": pl.String(),
}


class IncidentScopeError(ValueError):
    """An incident's scope cannot be evaluated with the inputs given."""


def credited_windows(
    bridged: pl.DataFrame,
    incidents: pl.DataFrame,
    policy: SeasonPolicy,
    incident_versions: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per non-bridged gap of an in-scope device, the union of incident windows it is
    credited over: [max(g0, a), min(g1, b + r)) for each confirmed incident [a, b) with
    recovery deadline r that the gap overlaps and that began no earlier than a - lookback.

    Device ids may be strings or integer codes, the same in all three frames. Returns one
    row per gap and qualifying incident: device_id, g0, c0, c1 (µs),
    incident_id. The windows of one gap may overlap; `union_windows` merges them.
    """
    if incidents.is_empty():
        return pl.DataFrame(schema={**WINDOWS, "device_id": bridged.schema["device_id"]})
    needs_versions = incidents.get_column("scope_version_below").is_not_null().any()
    if needs_versions and incident_versions is None:
        raise IncidentScopeError(
            "an agent_version_below scope needs the version of each device's last heartbeat "
            "at or before the incident start (incident_versions)"
        )
    spans = incidents.select(
        "incident_id",
        pl.col("start").cast(pl.Int64).alias("a"),
        pl.col("end").cast(pl.Int64).alias("b"),
        "recovery_deadline_us",
        "scope_all",
        "scope_device_ids",
        version_key_expr("scope_version_below").alias("below_key"),
    )
    lo, hi = spans.get_column("a").min(), spans.get_column("b").max()
    candidates = bridged.filter(~pl.col("bridged") & (pl.col("g1") > lo) & (pl.col("g0") < hi))
    pairs = (
        candidates.select("device_id", "g0", "g1")
        .join(spans, how="cross")
        .filter(
            (pl.col("g0") < pl.col("b"))
            & (pl.col("g1") > pl.col("a"))
            & (pl.col("g0") >= pl.col("a") - policy.incident_lookback_us)
        )
    )
    if needs_versions:
        assert incident_versions is not None
        versions = incident_versions.select(
            "incident_id", "device_id", version_key_expr("agent_version").alias("device_key")
        )
        pairs = pairs.join(versions, on=["incident_id", "device_id"], how="left")
    return (
        pairs.filter(covers_expr(versions=bool(needs_versions)))
        .select(
            "device_id",
            "g0",
            pl.max_horizontal("g0", "a").alias("c0"),
            pl.min_horizontal("g1", pl.col("b") + pl.col("recovery_deadline_us")).alias("c1"),
            "incident_id",
        )
        .filter(pl.col("c1") > pl.col("c0"))
    )


def union_windows(windows: pl.DataFrame) -> pl.DataFrame:
    """Union of the overlapping credit windows of each gap: device_id, g0, c0, c1 (µs)."""
    ordered = windows.sort("device_id", "g0", "c0").with_columns(
        first=~same_group_as_previous("device_id", "g0")
    )
    # Almost every gap has one window, which is its own union; only the gaps with several
    # (overlapping incidents) need the running merge.
    alone = pl.col("first") & pl.col("first").shift(-1).fill_null(True)
    single = ordered.filter(alone).select("device_id", "g0", "c0", "c1")
    several = ordered.filter(~alone)
    reach = pl.col("c1").cum_max().shift(1).over("device_id", "g0")
    merged = (
        several.with_columns(run=(reach.is_null() | (pl.col("c0") > reach)).cum_sum())
        .group_by("run", maintain_order=True)
        .agg(
            pl.col("device_id").first(),
            pl.col("g0").first(),
            pl.col("c0").min(),
            pl.col("c1").max(),
        )
        .drop("run")
    )
    return pl.concat([single, merged])


def incident_versions(heartbeats: pl.DataFrame, incidents: pl.DataFrame) -> pl.DataFrame:
    """For each version-scoped incident and device, the agent_version of the device's last
    heartbeat at or before the incident's start (devices with none are left out)."""
    check_frame(incidents, INCIDENTS, "incidents")
    scoped = incidents.filter(pl.col("scope_version_below").is_not_null()).select(
        "incident_id", pl.col("start").alias("at")
    )
    if scoped.is_empty():
        return pl.DataFrame(schema=dict(INCIDENT_VERSIONS))
    beats = (
        heartbeats.select("device_id", "observed_at", "boot_id", "agent_version")
        # the deduplication rule decides which version a duplicate heartbeat carries
        .sort("device_id", "observed_at", "boot_id", "agent_version")
        .unique(["device_id", "observed_at"], keep="first")
        .sort("observed_at")
    )
    asked = beats.select("device_id").unique().join(scoped, how="cross").sort("at")
    found = asked.join_asof(
        beats,
        left_on="at",
        right_on="observed_at",
        by="device_id",
        strategy="backward",
        check_sortedness=False,  # both sorted by time above
    )
    return found.filter(pl.col("agent_version").is_not_null()).select(list(INCIDENT_VERSIONS))


def incident_versions_near(
    incidents: pl.DataFrame,
    intervals: pl.DataFrame,
    near: pl.DataFrame,
    policy: SeasonPolicy,
) -> pl.DataFrame:
    """`incident_versions` without every raw heartbeat: the same answer from the online
    intervals and only the heartbeats `near` each version-scoped incident's start `a`
    (all of those observed in (a - liveness_timeout, a]; others are ignored).

    A device's last heartbeat at or before `a` is either in that window, or, when it has
    none there, the last heartbeat of an interval: the next heartbeat comes after `a`,
    more than a liveness timeout later, so the run ended there, and the interval that
    ends a period after it carries its version (with the duplicate rule applied)."""
    check_frame(incidents, INCIDENTS, "incidents")
    check_frame(intervals, INTERVALS, "intervals")
    scoped = incidents.filter(pl.col("scope_version_below").is_not_null())
    if scoped.is_empty():
        return pl.DataFrame(schema=dict(INCIDENT_VERSIONS))
    timeout = pl.duration(microseconds=policy.liveness_timeout_us)
    windows = scoped.select("incident_id", "start")
    last = pl.col("observed_at") == pl.col("observed_at").max()
    from_near = (
        near.select("device_id", "observed_at", "boot_id", "agent_version")
        .join(windows, how="cross")
        .filter(
            pl.col("observed_at") > pl.col("start") - timeout,
            pl.col("observed_at") <= pl.col("start"),
        )
        # the deduplication rule decides which version a duplicate heartbeat carries
        .sort("incident_id", "device_id", "observed_at", "boot_id", "agent_version")
        .group_by("incident_id", "device_id")
        .agg(pl.col("agent_version").filter(last).first())
        .select(list(INCIDENT_VERSIONS))
    )
    ends = intervals.select(
        "device_id",
        (pl.col("end") - pl.duration(microseconds=policy.heartbeat_period_us)).alias("last_at"),
        pl.col("last_agent_version").alias("agent_version"),
    ).sort("last_at")
    asked = (
        intervals.select("device_id")
        .unique()
        .join(windows.rename({"start": "at"}), how="cross")
        .sort("at")
    )
    from_ends = asked.join_asof(
        ends,
        left_on="at",
        right_on="last_at",
        by="device_id",
        strategy="backward",
        check_sortedness=False,  # both sorted by time above
    ).filter(pl.col("agent_version").is_not_null())
    return (
        from_ends.join(from_near, on=["incident_id", "device_id"], how="anti")
        .select(list(INCIDENT_VERSIONS))
        .vstack(from_near)
        .sort("incident_id", "device_id")
    )
