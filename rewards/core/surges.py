"""Write-surge detection (DESIGN 1: the 2024 write surge was only noticed by chance).

Writes are counted per minute for each (route, actor). A minute is a surge when its count
reaches max(min_writes, factor x the mean of the previous `baseline_minutes` minutes), so
a quiet actor trips at `min_writes` and a busy one only well above its own normal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SurgePolicy:
    baseline_minutes: int = 60
    factor: float = 5.0
    min_writes: int = 30


def surge_threshold(previous: Sequence[int], policy: SurgePolicy) -> float:
    """The count at which the current minute is a surge, given the minutes before it
    (oldest first; missing minutes count as zero)."""
    recent = list(previous)[-policy.baseline_minutes :]
    baseline = sum(recent) / policy.baseline_minutes
    return max(float(policy.min_writes), policy.factor * baseline)


def is_surge(previous: Sequence[int], current: int, policy: SurgePolicy) -> bool:
    return current >= surge_threshold(previous, policy)


def surge_minutes(
    counts: Mapping[int, int], minutes: Iterable[int], policy: SurgePolicy
) -> list[tuple[int, int, float]]:
    """(minute, writes, threshold) of each of `minutes` that is a surge, given the writes
    per minute in `counts` (minutes since the Unix epoch; missing minutes count as zero)."""
    found = []
    for minute in sorted(set(minutes)):
        previous = [counts.get(m, 0) for m in range(minute - policy.baseline_minutes, minute)]
        threshold = surge_threshold(previous, policy)
        writes = counts.get(minute, 0)
        if writes >= threshold:
            found.append((minute, writes, threshold))
    return found
