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
    """Per (route, actor): writes in each recent minute. `record` returns a Surge the first
    time a minute's count reaches the threshold."""

    def __init__(self, policy: SurgePolicy) -> None:
        self.policy = policy
        self._minutes: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        self._fired: set[tuple[str, str, int]] = set()
        self._lock = threading.Lock()

    def record(self, route: str, actor: str, now: datetime) -> Surge | None:
        minute = int(now.timestamp()) // 60
        key = (route, actor)
        with self._lock:
            counts = self._minutes[key]
            counts[minute] = counts.get(minute, 0) + 1
            oldest = minute - self.policy.baseline_minutes
            for old in [m for m in counts if m < oldest]:
                del counts[old]
            previous = [counts.get(m, 0) for m in range(oldest, minute)]
            threshold = surge_threshold(previous, self.policy)
            if counts[minute] >= threshold and (route, actor, minute) not in self._fired:
                self._fired.add((route, actor, minute))
                return Surge(route, actor, counts[minute], threshold)
        return None
