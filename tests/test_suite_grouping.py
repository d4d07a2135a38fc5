"""The suite's own machinery: `--dist loadgroup` keeps an `xdist_group`'s tests on one
worker, so what a group builds once (the 20,000-device fleet, the Dask cluster) is built
once. pytest 9.2 with pytest-xdist 3.8 silently stopped grouping (pytest-xdist#1386:
the group rides on the node id, which pytest 9.2 no longer lets xdist change): the suite
took 1,041 s instead of 929 s on the same machine with nothing failing. pyproject.toml
pins pytest below 9.2 until xdist follows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

GROUPED = """
import pytest

pytestmark = pytest.mark.xdist_group("together")


@pytest.mark.parametrize("n", range(8))
def test_grouped(n):
    pass
"""


def test_a_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
         "-p", "no:cacheprovider", "test_grouped.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    workers = re.findall(r"\[(gw\d+)\] .*PASSED", done.stdout)
    assert len(workers) == 8, done.stdout
    assert len(set(workers)) == 1, f"the group was split over {sorted(set(workers))}"
