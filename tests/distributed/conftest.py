"""Real Dask clusters for the tests (DESIGN 8): a `distributed.LocalCluster` of two worker
processes shared by a session, and a `dask scheduler` with a `dask worker` started as
separate OS processes on loopback, the way operators start them."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from tests.processes import free_port

DASK = str(Path(sys.executable).with_name("dask"))


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        memory_limit="3GiB",
        silence_logs=logging.ERROR,
    ) as local:
        yield local


@dataclass
class DaskProcesses:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]

    def stop(self) -> None:
        for process in (*self.workers, self.scheduler):
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def dask_processes(logs: Path, workers: int = 1) -> Iterator[DaskProcesses]:
    """`dask scheduler` and `dask worker` processes from this virtualenv, on loopback,
    ready (the workers registered) when yielded, killed afterwards."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    with (logs / "scheduler.log").open("wb") as log:
        scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running = DaskProcesses(address, scheduler, [])
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert scheduler.poll() is None, (logs / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the dask scheduler did not start in 60 s"
            time.sleep(0.2)
        for number in range(workers):
            with (logs / f"worker-{number}.log").open("wb") as log:
                running.workers.append(
                    subprocess.Popen(
                        [DASK, "worker", address, "--nthreads", "1", "--no-dashboard",
                         "--memory-limit", "2GiB"],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=60)
        yield running
    finally:
        running.stop()
