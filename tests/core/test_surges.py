"""The surge rule: a quiet actor trips at min_writes, a busy one at factor x its baseline."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rewards.core.surges import SurgePolicy, is_surge, surge_threshold, surge_windows

POLICY = SurgePolicy(baseline_minutes=10, factor=5.0, min_writes=20)


def test_a_quiet_actor_trips_at_the_minimum() -> None:
    assert surge_threshold([], POLICY) == 20
    assert not is_surge([0] * 10, 19, POLICY)
    assert is_surge([0] * 10, 20, POLICY)


def test_a_busy_actor_trips_only_well_above_its_own_normal() -> None:
    steady = [10] * 10  # baseline 10 a minute
    assert surge_threshold(steady, POLICY) == 50
    assert not is_surge(steady, 49, POLICY)
    assert is_surge(steady, 50, POLICY)


def test_only_the_baseline_window_counts() -> None:
    old_burst = [1000] * 5 + [0] * 10
    assert surge_threshold(old_burst, POLICY) == 20


EDGE = 60 * 29_000_000  # a minute's edge, in seconds since the epoch


def test_a_burst_straddling_a_minute_edge_is_one_burst() -> None:
    """20 writes in 2 seconds, 10 each side of a minute's edge. Counted per calendar minute
    they were 10 + 10 and escaped: a feed timing its bursts at the edges could write
    twice the threshold unseen."""
    counts = {EDGE - 1: 10, EDGE: 10}
    assert surge_windows(counts, counts, POLICY) == [(EDGE, 20, 20.0)]


def test_writes_spread_over_more_than_the_window_are_not_a_surge() -> None:
    counts = {EDGE + s: 5 for s in (0, 30, 61, 92, 123)}  # 20 over 123 s, at most 15 in 60
    assert surge_windows(counts, counts, POLICY) == []


def test_a_long_burst_is_reported_once_a_window() -> None:
    counts = {EDGE + s: 1 for s in range(150)}  # one a second for 150 s
    assert [s - EDGE for s, _, _ in surge_windows(counts, counts, POLICY)] == [19, 79, 139]


def slow_surges(counts: dict[int, int], policy: SurgePolicy) -> list[int]:
    """The seconds at which a surge is reported, by the rule's words: every write counted
    in the 60 s up to it, the baseline from the calendar minutes before it, and a report
    at most once in any 60 s."""
    reported: list[int] = []
    for second in sorted(counts):
        window = sum(c for s, c in counts.items() if second - 60 < s <= second)
        minute = second // 60
        before = [
            sum(c for s, c in counts.items() if s // 60 == m)
            for m in range(minute - policy.baseline_minutes, minute)
        ]
        fresh = not reported or second - reported[-1] >= 60
        if fresh and window >= surge_threshold(before, policy):
            reported.append(second)
    return reported


@given(st.dictionaries(st.integers(EDGE - 900, EDGE + 900), st.integers(1, 12), max_size=40))
def test_the_windows_are_the_rule_as_written(counts: dict[int, int]) -> None:
    found = surge_windows(counts, counts, POLICY)
    assert [s for s, _, _ in found] == slow_surges(counts, POLICY)
