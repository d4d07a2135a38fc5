"""Season policy files: every parameter of DESIGN 4, validated, with a stable hash."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from rewards.core import PolicyError
from rewards.seasons import load_policy
from rewards.settings import REPO_ROOT
from tests.builders import policy

SEASON = REPO_ROOT / "config" / "seasons" / "ignition-s2.toml"


def test_shipped_season_file_loads_with_every_parameter() -> None:
    season = load_policy(SEASON)
    assert season.season_id == "ignition-s2"
    assert season.epoch_count == 30
    assert season.heartbeat_period_us == 60_000_000
    assert season.liveness_timeout_us == 90_000_000
    assert season.restart_grace_us == 15 * 60_000_000
    assert season.max_bridges_per_epoch == 3
    assert season.min_uptime_ratio == Fraction(9, 10)
    assert season.tier_weights["default"] == 1


def test_ratio_is_the_decimal_as_written_not_a_binary_float() -> None:
    assert policy(min_uptime_ratio=0.9).min_uptime_ratio == Fraction(9, 10)
    assert policy(min_uptime_ratio="0.90").min_uptime_ratio == Fraction(9, 10)


def test_the_minimum_counted_time_is_the_exact_ratio_of_an_epoch_rounded_up_to_a_microsecond() -> (
    None
):
    assert policy(min_uptime_ratio=0.9).min_counted_us == 77_760_000_000  # exactly 77,760 s
    assert policy(min_uptime_ratio="0.95").min_counted_us == 82_080_000_000
    # 1e-10 of an hour is 0.36 µs: counted time qualifies from the next whole µs
    assert policy(min_uptime_ratio="0.0000000001", epoch_length="1h").min_counted_us == 1
    assert policy(min_uptime_ratio=0, epoch_length="1h").min_counted_us == 0


def test_hash_is_equal_for_equal_policies_spelled_differently() -> None:
    a = policy(restart_grace="15m", min_uptime_ratio="0.90")
    b = policy(restart_grace=900, min_uptime_ratio=0.9)
    assert a.policy_hash == b.policy_hash
    assert policy(restart_grace="16m").policy_hash != a.policy_hash


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"surprise": 1}, "'surprise' is not known"),
        ({"restart_grace": "-5m"}, "'restart_grace'"),
        ({"restart_grace": -5}, "'restart_grace'"),
        ({"end": "2024-04-19T00:00:00Z"}, "'end'"),
        ({"pool_per_epoch": 10.5}, "'pool_per_epoch'"),
        ({"pool_per_epoch": "1000"}, "'pool_per_epoch'"),
        ({"pool_per_epoch": 2**61}, "at most 2\\^63 - 1"),
        ({"min_uptime_ratio": "ninety"}, "'min_uptime_ratio'"),
        ({"min_uptime_ratio": 1.5}, "'min_uptime_ratio'"),
        ({"start": "2024-04-20T00:00:00"}, "no UTC offset"),
        ({"end": "2024-04-27T12:00:00Z"}, "whole number of epochs"),
        ({"tier_weights": {"A100": 3}}, "'default'"),
        ({"tier_weights": {"default": 1, "A100": 2.5}}, "'tier_weights.A100'"),
    ],
)
def test_invalid_policy_is_refused_naming_the_key(override: dict[str, object], named: str) -> None:
    with pytest.raises(PolicyError, match=named):
        policy(**override)


def test_bad_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('id = "x"\nname = "y"\nstart = 2024-04-20T00:00:00Z\n')
    with pytest.raises(PolicyError, match=r"broken\.toml: season key 'end' is required"):
        load_policy(broken)
    (tmp_path / "syntax.toml").write_text("id = \n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(tmp_path / "syntax.toml")


def test_a_policy_survives_pickling_for_the_shard_processes() -> None:
    import pickle

    shipped = policy(tier_weights={"default": 1, "H100": 4})
    again = pickle.loads(pickle.dumps(shipped))  # noqa: S301 - our own bytes
    assert again == shipped
    assert again.policy_hash == shipped.policy_hash
    with pytest.raises(TypeError):
        again.tier_weights["H100"] = 5  # type: ignore[index]
