"""Who runs a computation's tasks (DESIGN 8): an `Executor` maps one function over many
argument tuples and returns the results in order. `InProcess` runs them here, one after
the other; `ProcessPool` spreads them over local processes; a distributed executor only
has to do the same. Tasks are module-level functions with small, picklable arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# Tasks handed to the executor at once: progress is told after each group.
SHARDS_A_GROUP = 16


class Executor(Protocol):
    """Runs one function over many argument tuples and returns the results in order."""

    def map(self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]]) -> list[T]: ...


class InProcess:
    """Every task in this process, one after the other: memory is one shard's."""

    def map(self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]]) -> list[T]:
        return [fn(*task) for task in tasks]


class ProcessPool:
    """Tasks spread over `workers` local processes (started fresh, not forked: polars'
    thread pool does not survive a fork)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))

    def map(self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]]) -> list[T]:
        futures = [self._pool.submit(fn, *task) for task in tasks]
        return [f.result() for f in futures]

    def pids(self) -> list[int]:
        """The worker processes' ids (for reports of their memory)."""
        return sorted(self._pool._processes or {})  # the executor has no public accessor

    def close(self) -> None:
        self._pool.shutdown()

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_groups(
    run: Executor,
    fn: Callable[..., T],
    tasks: Sequence[tuple[Any, ...]],
    tell: Callable[[str], None],
    stage: str,
    unit: str = "shards",
) -> Iterator[list[T]]:
    """`fn` over `tasks` a group of shards at a time, telling the progress after each."""
    for lo in range(0, len(tasks), SHARDS_A_GROUP):
        yield run.map(fn, tasks[lo : lo + SHARDS_A_GROUP])
        tell(f"{stage}: {min(lo + SHARDS_A_GROUP, len(tasks))} of {len(tasks)} {unit}")
