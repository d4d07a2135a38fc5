"""DESIGN 4.1 and 4.2: heartbeats to online intervals, from scratch and incrementally."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core import (
    HEARTBEATS,
    INTERVALS,
    FrameSchemaError,
    PolicyError,
    empty,
    merge_intervals,
    online_intervals,
    unique_heartbeats,
)
from tests.builders import at, concat, heartbeats, policy

P = policy()


def rows(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    return frame.rows()


def test_interval_runs_from_first_heartbeat_to_one_period_after_the_last() -> None:
    result = online_intervals(heartbeats("gpu-1", start="2024-04-25T08:00Z", n=5), P)
    assert result.select("start", "end").rows() == [
        (at("2024-04-25T08:00Z"), at("2024-04-25T08:05Z"))
    ]


def test_restart_inside_liveness_timeout_does_not_split_interval() -> None:
    before = heartbeats("gpu-1", start="2024-04-25T08:00Z", n=3, boot="a")
    after = heartbeats("gpu-1", start="2024-04-25T08:03:30Z", n=2, boot="b", version="2.0")
    (interval,) = online_intervals(concat(before, after), P).iter_rows(named=True)
    assert (interval["start"], interval["end"]) == (
        at("2024-04-25T08:00Z"),
        at("2024-04-25T08:05:30Z"),
    )
    assert (interval["first_boot_id"], interval["last_boot_id"]) == ("a", "b")
    assert interval["last_agent_version"] == "2.0"


def test_gap_of_exactly_the_liveness_timeout_keeps_one_interval() -> None:
    frame = concat(
        heartbeats("gpu-1", start="2024-04-25T08:00Z"),
        heartbeats("gpu-1", start="2024-04-25T08:01:30Z"),
    )
    assert online_intervals(frame, P).height == 1


def test_gap_one_microsecond_past_the_timeout_splits_the_interval() -> None:
    frame = concat(
        heartbeats("gpu-1", start="2024-04-25T08:00Z"),
        heartbeats("gpu-1", start="2024-04-25T08:01:30.000001Z"),
    )
    result = online_intervals(frame, P)
    assert result.select("start", "end").rows() == [
        (at("2024-04-25T08:00Z"), at("2024-04-25T08:01Z")),
        (at("2024-04-25T08:01:30.000001Z"), at("2024-04-25T08:02:30.000001Z")),
    ]


def test_devices_never_share_an_interval() -> None:
    frame = concat(
        heartbeats("gpu-1", start="2024-04-25T08:00Z", n=2),
        heartbeats("gpu-2", start="2024-04-25T08:01Z", n=2),
    )
    assert online_intervals(frame, P).get_column("device_id").to_list() == ["gpu-1", "gpu-2"]


def test_disagreeing_duplicates_resolve_to_the_smallest_boot_and_version_whatever_the_order() -> (
    None
):
    one = heartbeats("gpu-1", start="2024-04-25T08:00Z", boot="b", version="1")
    other = heartbeats("gpu-1", start="2024-04-25T08:00Z", boot="a", version="9")
    third = heartbeats("gpu-1", start="2024-04-25T08:00Z", boot="a", version="10")
    for order in ([one, other, third], [third, other, one], [other, one, third]):
        assert unique_heartbeats(concat(*order)).rows() == [
            ("gpu-1", at("2024-04-25T08:00Z"), "a", "10")
        ]
        (interval,) = online_intervals(concat(*order), P).iter_rows(named=True)
        assert interval["first_boot_id"] == "a" and interval["first_agent_version"] == "10"


def test_late_heartbeat_filling_a_gap_merges_two_intervals() -> None:
    early = heartbeats("gpu-1", start="2024-04-25T08:00Z", n=3)
    late = heartbeats("gpu-1", start="2024-04-25T08:04Z", n=3)
    stored = online_intervals(concat(early, late), P)
    assert stored.height == 2
    merged = merge_intervals(stored, heartbeats("gpu-1", start="2024-04-25T08:03Z"), P)
    assert merged.select("start", "end").rows() == [
        (at("2024-04-25T08:00Z"), at("2024-04-25T08:07Z"))
    ]


def test_late_heartbeat_before_an_interval_extends_its_start_and_first_boot() -> None:
    stored = online_intervals(heartbeats("gpu-1", start="2024-04-25T08:00Z", n=3, boot="b"), P)
    merged = merge_intervals(stored, heartbeats("gpu-1", start="2024-04-25T07:59Z", boot="a"), P)
    assert merged.select("start", "first_boot_id", "last_boot_id").rows() == [
        (at("2024-04-25T07:59Z"), "a", "b")
    ]


def test_policy_with_liveness_timeout_below_heartbeat_period_is_refused() -> None:
    with pytest.raises(PolicyError, match="liveness_timeout"):
        policy(heartbeat_period="60s", liveness_timeout="59s")


def test_a_frame_with_a_wrong_column_fails_by_name() -> None:
    bad = heartbeats("gpu-1", start="2024-04-25T08:00Z").rename({"boot_id": "boot"})
    with pytest.raises(FrameSchemaError, match="missing column 'boot_id'"):
        online_intervals(bad, P)


# ---- property: the vectorized, incremental core equals a plain per-device reference ----


def reference_intervals(
    records: list[tuple[str, datetime, str, str]], period: timedelta, timeout: timedelta
) -> list[tuple[object, ...]]:
    """Obviously correct, one device at a time, straight from DESIGN 4.1-4.2."""
    winners: dict[tuple[str, datetime], tuple[str, str]] = {}
    for device, moment, boot, version in records:
        key = (device, moment)
        winners[key] = min(winners.get(key, (boot, version)), (boot, version))
    out: list[tuple[object, ...]] = []
    for device in sorted({d for d, _ in winners}):
        beats = sorted((m, *winners[(d, m)]) for d, m in winners if d == device)
        run = [beats[0]]
        for beat in beats[1:]:
            if beat[0] - run[-1][0] <= timeout:
                run.append(beat)
            else:
                out.append(
                    (
                        device,
                        run[0][0],
                        run[-1][0] + period,
                        run[0][1],
                        run[0][2],
                        run[-1][1],
                        run[-1][2],
                    )
                )
                run = [beat]
        out.append(
            (device, run[0][0], run[-1][0] + period, run[0][1], run[0][2], run[-1][1], run[-1][2])
        )
    return out


BASE = datetime(2024, 4, 25, 8, tzinfo=UTC)
record = st.tuples(
    st.sampled_from(["gpu-a", "gpu-b", "gpu-c"]),
    st.integers(0, 40).map(lambda k: BASE + timedelta(seconds=45 * k)),
    st.sampled_from(["b1", "b2", "B"]),
    st.sampled_from(["1.9.10", "1.10", "0.9"]),
)


def frame_of(records: list[tuple[str, datetime, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(records, schema=dict(HEARTBEATS), orient="row")


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(record, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=4),
    seed=st.randoms(use_true_random=False),
)
def test_incremental_merges_in_any_batches_equal_the_reference(records, cuts, seed) -> None:  # type: ignore[no-untyped-def]
    expected = reference_intervals(records, timedelta(seconds=60), timedelta(seconds=90))
    assert rows(online_intervals(frame_of(records), P)) == expected
    shuffled = list(records)
    seed.shuffle(shuffled)
    stored = empty(INTERVALS)
    bounds = [0, *sorted(c for c in cuts if c <= len(shuffled)), len(shuffled)]
    for lo, hi in pairwise(bounds):
        stored = merge_intervals(stored, frame_of(shuffled[lo:hi]), P)
    assert rows(stored) == expected
