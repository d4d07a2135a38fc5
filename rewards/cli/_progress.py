"""Progress of a long run on stderr: each stage's name, then its `<stage>: N of M <unit>`
lines with the time spent and a linear estimate of the time left."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from rewards.cli._shell import err

PROGRESS = re.compile(r"(?P<stage>[^:]+): (?P<done>\d+) of (?P<total>\d+) (?P<unit>\S.*)")


def duration(seconds: float) -> str:
    """Whole seconds, as minutes and seconds from a minute on: `12 s`, `3 min 05 s`."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


def with_eta(progress: str, elapsed_s: float) -> str:
    """`<stage>: N of M <unit>` with the stage's `elapsed_s` and what is left at the same
    pace (elapsed / N a unit; a dash before the first); any other text unchanged."""
    found = PROGRESS.fullmatch(progress)
    if found is None:
        return progress
    done, total = int(found["done"]), int(found["total"])
    no_estimate = "ETA –"  # noqa: RUF001 - an en dash, as a table marks a missing value
    left = f"about {duration(elapsed_s / done * (total - done))} left" if done else no_estimate
    return f"{progress}, {duration(elapsed_s)} elapsed, {left}"


class StageProgress:
    """The `on_stage` and `on_progress` callbacks of a run's `Stages`, printing to stderr.

    A stage's clock starts at the line before its first (or at the run's stage): the
    services tell progress after each group of shards, never when a stage begins."""

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.clock = clock
        self.last = self.started = clock()
        self.stage: str | None = None

    def on_stage(self, name: str) -> None:
        err.print(f"{self.what}: {name} ...", highlight=False)
        self.last, self.stage = self.clock(), None

    def on_progress(self, progress: str) -> None:
        now = self.clock()
        stage = progress.partition(":")[0]
        if stage != self.stage:
            self.stage, self.started = stage, self.last
        self.last = now
        err.print(f"  {with_eta(progress, now - self.started)}", highlight=False)
