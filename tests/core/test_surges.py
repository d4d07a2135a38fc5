"""The surge rule: a quiet actor trips at min_writes, a busy one at factor x its baseline."""

from __future__ import annotations

from rewards.core.surges import SurgePolicy, is_surge, surge_threshold

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
