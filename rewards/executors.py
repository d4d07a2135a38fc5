"""Who runs a computation's tasks (DESIGN 8): an `Executor` maps one function over many
argument tuples and returns the results in order. `InProcess` runs them here, one after
the other; `ProcessPool` spreads them over local processes; `DaskCluster` over the workers
of a Dask distributed cluster. Tasks are module-level functions with small, picklable
arguments, and safe to run twice: a task whose worker died is run again elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from multiprocessing import get_context
from typing import Any, Protocol, TypeVar

from distributed import CancelledError, Client, KilledWorker

T = TypeVar("T")

# Tasks handed to the executor at once: progress is told after each group.
SHARDS_A_GROUP = 16


class Executor(Protocol):
    """Runs one function over many argument tuples and returns the results in order;
    `tasks_at_once` is how many it is handed at a time (progress is told between)."""

    tasks_at_once: int

    def map(self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]]) -> list[T]: ...

    def describe(self) -> str: ...


class ClusterError(RuntimeError):
    """The cluster could not be reached, was lost mid-run, or kept losing a task's
    workers: the run fails (and stores nothing), it is never half done."""


class InProcess:
    """Every task in this process, one after the other: memory is one shard's."""

    tasks_at_once = SHARDS_A_GROUP

    def describe(self) -> str:
        return "in process"

    def map(self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]]) -> list[T]:
        return [fn(*task) for task in tasks]


class ProcessPool:
    """Tasks spread over `workers` local processes (started fresh, not forked: polars'
    thread pool does not survive a fork)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        self._workers = workers
        self.tasks_at_once = max(SHARDS_A_GROUP, 2 * workers)

    def describe(self) -> str:
        return f"{self._workers} local processes"

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
    step = run.tasks_at_once
    for lo in range(0, len(tasks), step):
        yield run.map(fn, tasks[lo : lo + step])
        tell(f"{stage}: {min(lo + step, len(tasks))} of {len(tasks)} {unit}")


class DaskCluster:
    """Tasks on the workers of a Dask distributed cluster (DESIGN 8): the scheduler at
    `address` (`tcp://host:port`), or a `distributed.LocalCluster` object. A task whose
    worker dies is run again on another (Dask's own retry); a lost scheduler, or a task
    that keeps killing its workers, is a `ClusterError`. Workers need this package and
    the run's work folder at the same path (a shared mount beyond one machine)."""

    def __init__(self, address: Any, *, connect_timeout_s: float = 10.0) -> None:
        self._address = address if isinstance(address, str) else address.scheduler_address
        try:
            self._client = Client(address, timeout=connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            reason = f"cannot reach the Dask scheduler at {self._address}: {exc}"
            raise ClusterError(reason) from exc
        try:  # a cluster without workers would hold the run forever
            self._client.wait_for_workers(1, timeout=connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise ClusterError(f"the Dask scheduler at {self._address} has no workers") from exc
        threads = sum(self._client.nthreads().values())
        self.tasks_at_once = max(SHARDS_A_GROUP, 4 * threads)

    def describe(self) -> str:
        return f"dask {self._address} ({len(self._client.nthreads())} workers)"[:200]

    def map(self, fn: Callable[..., T], tasks: Sequence[tuple[Any, ...]]) -> list[T]:
        if not tasks:
            return []
        futures = self._client.map(fn, *zip(*tasks, strict=True), pure=False)
        try:
            return list(self._client.gather(futures))
        except KilledWorker as exc:
            raise ClusterError(f"a task kept losing its Dask workers: {exc}") from exc
        except (CancelledError, OSError) as exc:
            raise ClusterError(f"lost the Dask scheduler at {self._address}: {exc!r}") from exc

    def close(self) -> None:
        with suppress(OSError, TimeoutError):  # a lost scheduler has nothing to close
            self._client.close(timeout=5)

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
