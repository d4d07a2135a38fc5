"""The simulated fleet is realistic (issue 14): two to three online intervals per
device-day, from blips, restarts, upgrades and outages. The fleet-scale checks of the
simulator are a benchmark: bench/sim_scale.py."""

from __future__ import annotations

from datetime import timedelta

from rewards.core import SeasonPolicy, online_intervals
from rewards.sim.fleet import FleetSpec, fleet_feed


def test_a_device_day_has_two_to_three_online_intervals() -> None:
    # A ten-minute period keeps the week's 2M heartbeats small; gaps are drawn in slots, so
    # the fleet's shape against its liveness timeout (1.5 periods) is the one of 60 s.
    spec = FleetSpec(seed=3, devices=2_000, days=7, heartbeat_period_s=600, scenario="steady")
    policy = SeasonPolicy(
        season_id="density",
        name="density",
        start=spec.start,
        end=spec.start + timedelta(days=spec.days),
        pool_per_epoch=1,
        token_decimals=0,
        heartbeat_period_us=600_000_000,
        liveness_timeout_us=900_000_000,
    )
    truth = fleet_feed(spec).truth(spec.start_us, spec.end_us)
    per_device_day = online_intervals(truth, policy).height / (spec.devices * spec.days)
    print(f"{per_device_day:.2f} intervals per device-day")
    assert 2 <= per_device_day <= 3
    assert truth.get_column("device_id").n_unique() > 0.95 * spec.devices
