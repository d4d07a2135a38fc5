"""Counting each actor's writes per route and minute, in this process, to spot surges."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from rewards.core import SurgePolicy, surge_threshold


@dataclass(frozen=True)
class Surge:
    route: str
    actor: str
    writes: int
    threshold: float


class WriteCounter:
    """Per (route, actor): writes in each of the last 60 seconds (the current count) and in
    each recent minute (the baseline). The current count slides with the clock, so a burst
    is one burst whichever minute's edge it straddles. `record` returns a Surge when the
    count reaches the threshold, at most once a minute for each (route, actor)."""

    WINDOW_S = 60

    def __init__(self, policy: SurgePolicy) -> None:
        self.policy = policy
        self._minutes: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        self._seconds: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        self._fired: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def record(self, route: str, actor: str, now: datetime) -> Surge | None:
        second = int(now.timestamp())
        minute = second // 60
        key = (route, actor)
        with self._lock:
            writes = _count(self._seconds[key], second, second - self.WINDOW_S)
            counts = self._minutes[key]
            oldest = minute - self.policy.baseline_minutes
            _count(counts, minute, oldest - 1)
            previous = [counts.get(m, 0) for m in range(oldest, minute)]
            threshold = surge_threshold(previous, self.policy)
            last = self._fired.get(key)
            if writes >= threshold and (last is None or second - last >= self.WINDOW_S):
                self._fired[key] = second
                return Surge(route, actor, writes, threshold)
        return None


def _count(buckets: dict[int, int], bucket: int, expired: int) -> int:
    """Add one to `bucket`, drop buckets up to `expired`, and return the total kept."""
    buckets[bucket] = buckets.get(bucket, 0) + 1
    for old in [b for b in buckets if b <= expired]:
        del buckets[old]
    return sum(buckets.values())
