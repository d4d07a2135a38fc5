"""Processes for end-to-end tests: the simulator and the CLI run as real subprocesses
(`rewards`), and the CLI in this process as a process would run it (`cli`)."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from rewards.cli import main

TOKEN = "e2e-service-token"
REWARDS = [sys.executable, "-m", "rewards"]
# A season whose heartbeat period matches the 10-minute simulated fleet of the e2e tests:
# the same fleet shape as one-minute heartbeats at a tenth of the volume.
TEN_MINUTE_SEASON = """
id = "e2e"
name = "End-to-end season"
start = 2024-04-20T00:00:00Z
end = 2024-04-27T00:00:00Z
pool_per_epoch = 1000000
token_decimals = 6
heartbeat_period = "10m"
liveness_timeout = "15m"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Simulator:
    url: str
    args: list[str]
    process: subprocess.Popen[bytes]


def start_simulator(args: list[str]) -> Simulator:
    port = free_port()
    process = subprocess.Popen(
        [*REWARDS, "sim", "serve", "--port", str(port), "--token", TOKEN, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Simulator(url, args, process)
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(
                    process.stderr.read().decode() if process.stderr else ""
                ) from None
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("simulator did not start")


FLEET = [
    "--seed",
    "2024",
    "--devices",
    "1200",
    "--days",
    "7",
    "--scenario",
    "april-2024",
    "--period",
    "600",
]


@pytest.fixture(scope="session")
def fleet_simulator() -> Iterator[Simulator]:
    """1,200 devices, 7 days, april-2024, with 10% HTTP 500s, 429s and truncated bodies."""
    sim = start_simulator(
        [
            *FLEET,
            "--bad-rate",
            "0.0002",
            "--error-rate",
            "0.1",
            "--throttle-rate",
            "0.02",
            "--retry-after",
            "1",
            "--truncate-rate",
            "0.03",
            "--fault-seed",
            "11",
        ]
    )
    yield sim
    sim.process.terminate()
    sim.process.wait(timeout=10)


@pytest.fixture(scope="session")
def season_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seasons")
    (folder / "e2e.toml").write_text(TEN_MINUTE_SEASON)
    return folder


def cli_env(db_url: str, sim_url: str, season_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}
    env.update(
        {
            "REWARDS_DATABASE_URL": db_url,
            "REWARDS_UPTIME_API_URL": sim_url,
            "REWARDS_UPTIME_API_TOKEN": TOKEN,
            "REWARDS_SEASONS_DIR": str(season_dir),
            "REWARDS_SEASON": "e2e",
            "REWARDS_BACKOFF_BASE_S": "0.05",
            "REWARDS_PAGE_SIZE": "10000",
            # the test's own archive (session fixtures come before the per-test one)
            "REWARDS_ARCHIVE_URL": os.environ.get("REWARDS_ARCHIVE_URL")
            or tempfile.mkdtemp(prefix="archive-"),
        }
    )
    env.update(extra)
    return env


def rewards(
    *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REWARDS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`rewards ARGS` run as `rewards(...)` runs it, but in this process: the same `main`,
    with exactly `env` as its environment, stdout and stderr captured apart, and the same
    exit code. An exception that escapes `main` is written to stderr as a traceback, as a
    real process would, so `"Traceback" not in stderr` still catches it. A process costs
    about a second of start-up (imports) that the command-line wiring tests need not pay;
    the tests about processes (signals, kills, servers) start real ones."""
    overrides: dict[str, str | None] = {k: None for k in os.environ if k not in env}
    overrides.update(env)
    with CliRunner().isolation(env=overrides) as (stdout, stderr, _):
        code = _exit_code(list(args))
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    gc.collect()  # close the command's database connections now, as its exit would
    return subprocess.CompletedProcess(["rewards", *args], code, out, err)


def _exit_code(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0
