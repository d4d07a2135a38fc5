"""Write-surge detection (DESIGN 1: the 2024 write surge was only noticed by chance).

Writes are counted for each (route, actor) over the 60 seconds up to each write, a window
that slides with the clock, so a burst is one burst whichever minute's edge it straddles.
It is a surge when that count reaches max(min_writes, factor x the mean writes a minute
of the `baseline_minutes` calendar minutes before), so a quiet actor trips at `min_writes`
and a busy one only well above its own normal.
"""

from __future__ import annotations

from collections import defaultdict
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


WINDOW_S = 60  # the seconds a surge's writes are counted over


def surge_windows(
    counts: Mapping[int, int], seconds: Iterable[int], policy: SurgePolicy
) -> list[tuple[int, int, float]]:
    """(second, writes, threshold) for each of `seconds` where the writes in the window of
    WINDOW_S seconds ending there reach the threshold, given the writes per second in
    `counts` (seconds since the Unix epoch; missing seconds count as zero): at most one a
    window, so a long burst gives one a minute, not one a write."""
    per_minute: dict[int, int] = defaultdict(int)
    for second, writes in counts.items():
        per_minute[second // 60] += writes
    found: list[tuple[int, int, float]] = []
    for second in sorted(set(seconds)):
        if found and second - found[-1][0] < WINDOW_S:
            continue
        writes = sum(counts.get(s, 0) for s in range(second - WINDOW_S + 1, second + 1))
        minute = second // 60
        previous = [per_minute.get(m, 0) for m in range(minute - policy.baseline_minutes, minute)]
        threshold = surge_threshold(previous, policy)
        if writes >= threshold:
            found.append((second, writes, threshold))
    return found
