"""`rewards sim dump --from --to`: the deduplicated truth of a time range, at any fleet size."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from rewards.core import to_us
from rewards.sim.fleet import FORCED_UPGRADE, FleetSpec, fleet_feed
from tests.processes import cli

ENV = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}


def test_sim_dump_of_a_range_writes_the_truth_observed_in_it(tmp_path: Path) -> None:
    out = tmp_path / "window.parquet"
    args = ["--devices", "600000", "--days", "30", "--seed", "4"]
    done = cli(
        "sim",
        "dump",
        *args,
        "--from",
        "2024-04-25T08:00:00Z",
        "--to",
        "2024-04-25T08:02:00Z",
        "--out",
        str(out),
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    dumped = pl.read_parquet(out)
    low, high = FORCED_UPGRADE.replace(minute=0), FORCED_UPGRADE.replace(minute=2)
    expected = fleet_feed(FleetSpec(seed=4, devices=600_000, days=30)).truth(
        to_us(low), to_us(high)
    )
    assert dumped.equals(expected)
    assert dumped.get_column("device_id").n_unique() > 400_000  # before the forced upgrade
    observed = dumped.get_column("observed_at")
    assert observed.min() >= low and observed.max() < high  # type: ignore[operator]


def test_sim_dump_refuses_a_range_that_ends_before_it_begins(tmp_path: Path) -> None:
    done = cli(
        "sim",
        "dump",
        "--devices",
        "5",
        "--from",
        "2024-04-22T00:00:00Z",
        "--to",
        "2024-04-21T00:00:00Z",
        "--out",
        str(tmp_path / "x.parquet"),
        env=ENV,
    )
    assert done.returncode != 0 and "--to must be after --from" in done.stderr
    bad = cli(
        "sim",
        "dump",
        "--devices",
        "5",
        "--from",
        "yesterday",
        "--out",
        str(tmp_path / "x.parquet"),
        env=ENV,
    )
    assert bad.returncode != 0 and "--from" in bad.stderr
