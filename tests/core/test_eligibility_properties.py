"""The vectorized core against a plain, per-device reference of DESIGN 4 on random fleets."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core import (
    DEVICES,
    HEARTBEATS,
    INCIDENTS,
    device_epochs,
    incident_versions,
    online_intervals,
    version_key,
)
from rewards.core.frames import to_us
from tests.builders import policy
from tests.core.test_intervals import reference_intervals

# A small season: three one-hour epochs, limits small enough for random fleets to hit them.
P = policy(
    start="2024-04-25T00:00:00Z",
    end="2024-04-25T03:00:00Z",
    epoch_length="1h",
    restart_grace="5m",
    max_bridges_per_epoch=2,
    incident_lookback="10m",
    min_uptime_ratio="0.5",
    pool_per_epoch=1_000_003,
    tier_weights={"default": 1, "A100": 3},
)
T0 = datetime(2024, 4, 25, tzinfo=UTC)
US = 1_000_000
DEVICE_IDS = ["gpu-a", "gpu-b", "gpu-c", "Gpu-d"]


def overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


def union(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(windows):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def reference(records, incidents, meta):  # type: ignore[no-untyped-def]
    """DESIGN 4, one device at a time, in plain integers."""
    S, L, N = to_us(P.start), P.epoch_length_us, P.epoch_count
    intervals = defaultdict(list)
    for d, s, e, fb, fv, lb, lv in reference_intervals(
        records,
        timedelta(microseconds=P.heartbeat_period_us),
        timedelta(microseconds=P.liveness_timeout_us),
    ):
        intervals[d].append((to_us(s), to_us(e), fb, fv, lb, lv))
    winners: dict[tuple[str, datetime], tuple[str, str]] = {}
    for d, m, b, v in records:
        winners[(d, m)] = min(winners.get((d, m), (b, v)), (b, v))
    rows = {}
    for device in sorted(set(intervals) | set(meta)):
        ivs = intervals.get(device, [])
        used, denied = defaultdict(int), defaultdict(int)
        bridged, credited = [], []
        for (_, g0, *_x, lb, lv), (g1, _e, fb, fv, *_y) in pairwise(ivs):
            epoch = (g0 - S) // L
            if g1 - g0 <= P.restart_grace_us and (lb != fb or lv != fv):
                if not 0 <= epoch < N:
                    bridged.append((g0, g1))
                elif used[epoch] < P.max_bridges_per_epoch:
                    used[epoch] += 1
                    bridged.append((g0, g1))
                else:
                    denied[epoch] += 1
                    credited.extend(credit(device, g0, g1, incidents, winners))
            else:
                credited.extend(credit(device, g0, g1, incidents, winners))
        credited_union = union([(lo, hi) for lo, hi, _ in credited])
        for k in range(N):
            e0, e1 = S + k * L, S + (k + 1) * L
            online = sum(overlap(s, e, e0, e1) for s, e, *_ in ivs)
            bridge = sum(overlap(a, b, e0, e1) for a, b in bridged)
            credit_us = sum(overlap(a, b, e0, e1) for a, b in credited_union)
            counted = online + bridge + credit_us
            pieces = sorted(
                [(max(s, e0), min(e, e1)) for s, e, *_ in ivs if overlap(s, e, e0, e1)]
                + [
                    (max(a, e0), min(b, e1))
                    for a, b in bridged + credited_union
                    if overlap(a, b, e0, e1)
                ]
            )
            edges = [e0] + [x for p in pieces for x in p] + [e1]
            longest = max(edges[i + 1] - edges[i] for i in range(0, len(edges), 2))
            gpu_model, suspended = meta.get(device, (None, False))
            num, den = P.min_uptime_ratio.numerator, P.min_uptime_ratio.denominator
            reached = counted * den >= num * L
            reason = (
                "SUSPENDED"
                if suspended
                else "ELIGIBLE"
                if reached
                else "NO_HEARTBEATS"
                if counted == 0
                else "BELOW_MIN_UPTIME"
            )
            ids = sorted({i for lo, hi, i in credited if overlap(lo, hi, e0, e1)})
            rows[(k, device)] = {
                "online_s": online / US,
                "bridged_s": bridge / US,
                "credited_s": credit_us / US,
                "uptime_ratio": counted / L,
                "eligible": reached and not suspended,
                "reason": reason,
                "bridges_used": used[k],
                "bridges_denied": denied[k],
                "shortfall_s": float(max(0, num * L - den * counted)) / (den * US),
                "longest_uncounted_gap_s": longest / US,
                "crediting_incidents": ids,
                "weight": counted
                * P.tier_weights.get(gpu_model or "default", P.tier_weights["default"]),
            }
    for k in range(N):
        eligible = sorted(d for (e, d), r in rows.items() if e == k and r["eligible"])
        total = sum(rows[(k, d)]["weight"] for d in eligible)
        for d in {d for (e, d) in rows if e == k}:
            rows[(k, d)]["reward"] = 0
        if total:
            shares = {d: divmod(rows[(k, d)]["weight"] * P.pool_per_epoch, total) for d in eligible}
            left = P.pool_per_epoch - sum(q for q, _ in shares.values())
            lucky = sorted(eligible, key=lambda d: (-shares[d][1], d.encode()))[:left]
            for d in eligible:
                rows[(k, d)]["reward"] = shares[d][0] + (d in lucky)
    return rows


def credit(device, g0, g1, incidents, winners):  # type: ignore[no-untyped-def]
    out = []
    for inc in incidents:
        a, b = to_us(inc["start"]), to_us(inc["end"])
        if not (g0 < b and g1 > a and g0 >= a - P.incident_lookback_us):
            continue
        in_scope = inc["scope_all"] or device in inc["scope_device_ids"]
        if inc["scope_version_below"] is not None:
            before = [m for (d, m) in winners if d == device and m <= inc["start"]]
            if before:
                version = winners[(device, max(before))][1]
                in_scope = in_scope or version_key(version) < version_key(
                    inc["scope_version_below"]
                )
        if in_scope:
            lo, hi = max(g0, a), min(g1, b + inc["recovery_deadline_us"])
            if hi > lo:
                out.append((lo, hi, inc["incident_id"]))
    return out


beat = st.tuples(
    st.sampled_from(DEVICE_IDS),
    st.integers(-15, 200).map(lambda k: T0 + timedelta(seconds=60 * k)),
    st.sampled_from(["b1", "b2"]),
    st.sampled_from(["1.9.10", "1.10", "v2"]),
)
# Runs of consecutive heartbeats make intervals long enough to matter.
run = st.tuples(beat, st.integers(1, 40)).map(
    lambda r: [
        (r[0][0], r[0][1] + timedelta(seconds=60 * i), r[0][2], r[0][3]) for i in range(r[1])
    ]
)
incident = st.fixed_dictionaries(
    {
        "incident_id": st.sampled_from(["i1", "i2", "i3"]),
        "start": st.integers(0, 170).map(lambda k: T0 + timedelta(minutes=k)),
        "length_min": st.integers(1, 60),
        "recovery_deadline_us": st.integers(0, 30).map(lambda m: m * 60 * US),
        "scope_all": st.booleans(),
        "scope_device_ids": st.lists(st.sampled_from(DEVICE_IDS), max_size=2),
        "scope_version_below": st.sampled_from([None, "1.10", "2"]),
    }
)
meta = st.dictionaries(
    st.sampled_from([*DEVICE_IDS, "gpu-registry-only"]),
    st.tuples(st.sampled_from([None, "A100", "H100"]), st.booleans()),
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(
    runs=st.lists(run, max_size=8),
    raw_incidents=st.lists(incident, max_size=3, unique_by=lambda i: i["incident_id"]),
    meta=meta,
)
def test_vectorized_core_equals_the_reference_and_pays_every_pool_exactly(  # type: ignore[no-untyped-def]
    runs, raw_incidents, meta
) -> None:
    records = [r for chunk in runs for r in chunk]
    incidents = [
        {**i, "end": i["start"] + timedelta(minutes=i["length_min"])} for i in raw_incidents
    ]
    heartbeats = pl.DataFrame(records, schema=dict(HEARTBEATS), orient="row")
    incident_frame = pl.DataFrame(
        [{k: i[k] for k in INCIDENTS} for i in incidents], schema=dict(INCIDENTS)
    )
    devices = pl.DataFrame(
        [
            {"device_id": d, "gpu_model": m, "suspended": s, "valid_from": None, "valid_to": None}
            for d, (m, s) in meta.items()
        ],
        schema=dict(DEVICES),
    )
    got = device_epochs(
        online_intervals(heartbeats, P),
        P,
        incidents=incident_frame,
        devices=devices,
        incident_versions=incident_versions(heartbeats, incident_frame),
    )
    expected = reference(records, incidents, meta)
    assert got.height == len(expected)
    for result in got.iter_rows(named=True):
        want = expected[(result["epoch"], result["device_id"])]
        for column, value in want.items():
            if column != "weight":
                assert result[column] == value, (column, result, want)
    paid = got.group_by("epoch").agg(pl.col("reward").sum(), pl.col("eligible").any())
    for epoch, total, any_eligible in paid.iter_rows():
        assert total == (P.pool_per_epoch if any_eligible else 0), epoch


@settings(max_examples=100, deadline=None)
@given(
    runs=st.lists(run, max_size=8),
    raw_incidents=st.lists(incident, min_size=1, max_size=3, unique_by=lambda i: i["incident_id"]),
)
def test_declaring_incidents_never_lowers_counted_time(runs, raw_incidents) -> None:  # type: ignore[no-untyped-def]
    records = [r for chunk in runs for r in chunk]
    heartbeats = pl.DataFrame(records, schema=dict(HEARTBEATS), orient="row")
    incident_frame = pl.DataFrame(
        [
            {
                **{k: i[k] for k in INCIDENTS if k != "end"},
                "end": i["start"] + timedelta(minutes=i["length_min"]),
            }
            for i in raw_incidents
        ],
        schema=dict(INCIDENTS),
    )
    intervals = online_intervals(heartbeats, P)
    counted = pl.sum_horizontal("online_s", "bridged_s", "credited_s")
    without = device_epochs(intervals, P).select(counted.alias("c"))
    declared = device_epochs(
        intervals,
        P,
        incidents=incident_frame,
        incident_versions=incident_versions(heartbeats, incident_frame),
    ).select(counted.alias("c"))
    assert (declared["c"] >= without["c"]).all()
