"""A process's peak resident set, as the benchmarks report it.

Read from /proc (VmHWM), never from `getrusage().ru_maxrss`: a process started by another
inherits the parent's resident set at the fork in its ru_maxrss, across the exec. A worker
started by a parent holding 3 GiB reports 3 GiB though its own peak is 13 MiB; that is how
bench/fleet_ingest.py once credited SQLite's ingest with the 7.5 GiB its parent had used
to sort the archive of the run before.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


def peak_rss_mib(pid: int | str = "self") -> float:
    """The process's peak resident set (VmHWM) so far, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def reset_peak() -> bool:
    """Start this process's peak resident set afresh from what it holds now (Linux: 5 to
    /proc/self/clear_refs), so a benchmark's set-up does not count in its timed part's
    peak. False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class ChildPeaks:
    """The largest peak resident set (VmHWM) of this process's children while it runs, in
    MiB, sampled every `every_s` from a thread (worker processes started inside the code
    being measured, which hands out no pids)."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.peak = 0.0
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        me = os.getpid()
        while not self._stop.wait(self._every):
            try:
                children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
            except OSError:
                continue
            for pid in children:
                with contextlib.suppress(OSError):  # ended meanwhile
                    self.peak = max(self.peak, peak_rss_mib(pid))

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
