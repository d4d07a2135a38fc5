"""DESIGN 4.3-4.8, rule by rule, with hand-worked examples and their edges."""

from __future__ import annotations

import polars as pl
import pytest

from rewards.core import (
    DEVICES,
    IncidentScopeError,
    allocate,
    device_epochs,
    epoch_payouts,
    online_intervals,
    version_key,
)
from rewards.core.frames import INCIDENT_VERSIONS
from tests.builders import at, concat, devices, heartbeats, incidents, policy

P = policy()  # season 2024-04-20 .. 2024-04-27: seven one-day epochs
DAY = 86_400
EPOCH_25 = 5  # 2024-04-25


def run(*frames: pl.DataFrame, **kwargs: object) -> pl.DataFrame:
    return device_epochs(online_intervals(concat(*frames), P), P, **kwargs)  # type: ignore[arg-type]


def row(results: pl.DataFrame, device: str, epoch: int) -> dict[str, object]:
    (found,) = results.filter(
        (pl.col("device_id") == device) & (pl.col("epoch") == epoch)
    ).to_dicts()
    return found


def day(device: str, date: str, **kw: object) -> pl.DataFrame:
    """A device online all day `date` (one heartbeat a minute)."""
    return heartbeats(device, start=f"{date}T00:00Z", n=1440, **kw)  # type: ignore[arg-type]


# ---- 4.3 and 4.4: gaps and bridges -------------------------------------------------------


def test_restart_inside_liveness_timeout_counts_as_online_without_a_bridge() -> None:
    frames = (
        heartbeats("gpu-1", start="2024-04-25T00:00Z", n=600, boot="a"),
        heartbeats("gpu-1", start="2024-04-25T10:00:30Z", n=840, boot="b"),
    )
    got = row(run(*frames), "gpu-1", EPOCH_25)
    assert got["online_s"] == DAY - 30 + 30 and got["bridges_used"] == 0


def test_short_gap_with_new_boot_is_bridged_and_same_boot_is_not() -> None:
    restart = (
        heartbeats("gpu-1", start="2024-04-25T08:00Z", n=10, boot="a"),
        heartbeats("gpu-1", start="2024-04-25T08:20Z", n=10, boot="b"),
    )
    blip = (
        heartbeats("gpu-2", start="2024-04-25T08:00Z", n=10, boot="a"),
        heartbeats("gpu-2", start="2024-04-25T08:20Z", n=10, boot="a"),
    )
    results = run(*restart, *blip)
    assert row(results, "gpu-1", EPOCH_25)["bridged_s"] == 600  # 08:10 .. 08:20
    assert row(results, "gpu-1", EPOCH_25)["bridges_used"] == 1
    assert row(results, "gpu-2", EPOCH_25)["bridged_s"] == 0
    assert row(results, "gpu-2", EPOCH_25)["longest_uncounted_gap_s"] == DAY - 8 * 3600 - 30 * 60


def test_a_new_agent_version_alone_makes_a_gap_bridgeable() -> None:
    frames = (
        heartbeats("gpu-1", start="2024-04-25T08:00Z", n=10, version="0.9.9"),
        heartbeats("gpu-1", start="2024-04-25T08:20Z", n=10, version="0.10.0"),
    )
    assert row(run(*frames), "gpu-1", EPOCH_25)["bridged_s"] == 600


def test_a_gap_longer_than_restart_grace_is_not_bridged() -> None:
    frames = (
        heartbeats("gpu-1", start="2024-04-25T08:00Z", n=10, boot="a"),
        heartbeats("gpu-1", start="2024-04-25T08:25:00.000001Z", n=10, boot="b"),
    )
    got = row(run(*frames), "gpu-1", EPOCH_25)
    assert got["bridged_s"] == 0 and got["bridges_used"] == 0 and got["bridges_denied"] == 0


def test_the_fourth_bridge_of_an_epoch_is_denied() -> None:
    frames = [
        heartbeats("gpu-1", start=f"2024-04-25T{h:02d}:00Z", n=50, boot=f"b{h}") for h in range(5)
    ]  # gaps 00:50-01:00, 01:50-02:00, 02:50-03:00, 03:50-04:00
    got = row(run(*frames), "gpu-1", EPOCH_25)
    assert (got["bridges_used"], got["bridges_denied"]) == (3, 1)
    assert got["bridged_s"] == 3 * 600
    assert got["longest_uncounted_gap_s"] == DAY - 4 * 3600 - 50 * 60


def test_a_gap_spanning_midnight_counts_against_the_epoch_it_starts_in() -> None:
    frames = (
        heartbeats("gpu-1", start="2024-04-24T23:45Z", n=10, boot="a"),
        heartbeats("gpu-1", start="2024-04-25T00:05Z", n=10, boot="b"),
    )
    results = run(*frames)
    before, after = row(results, "gpu-1", EPOCH_25 - 1), row(results, "gpu-1", EPOCH_25)
    assert (before["bridged_s"], after["bridged_s"]) == (300, 300)
    assert (before["bridges_used"], after["bridges_used"]) == (1, 0)


def test_a_gap_before_the_season_counts_against_no_epoch() -> None:
    frames = (
        heartbeats("gpu-1", start="2024-04-19T23:50Z", n=5, boot="a"),
        heartbeats("gpu-1", start="2024-04-20T00:05Z", n=5, boot="b"),
    )
    got = row(run(*frames), "gpu-1", 0)
    assert got["bridged_s"] == 300 and got["bridges_used"] == 0


# ---- 4.5: incident credit ----------------------------------------------------------------

APRIL = {
    "id": "apr-25",
    "start": "2024-04-25T08:05Z",
    "end": "2024-04-25T09:05Z",
    "deadline": "48h",
}


def outage(device: str, down: str, back: str, **kw: object) -> tuple[pl.DataFrame, ...]:
    """Online from 2024-04-25T00:00 until `down`, then again from `back` to 2024-04-27."""
    minutes_up = int((at(down) - at("2024-04-25T00:00Z")).total_seconds() // 60)
    minutes_back = int((at("2024-04-27T00:00Z") - at(back)).total_seconds() // 60)
    return (
        heartbeats(device, start="2024-04-25T00:00Z", n=minutes_up, **kw),  # type: ignore[arg-type]
        heartbeats(device, start=back, n=minutes_back, **kw),
    )  # type: ignore[arg-type]


def test_an_incident_credits_a_gap_from_its_start_until_the_device_is_back() -> None:
    results = run(
        *outage("gpu-1", "2024-04-25T08:00Z", "2024-04-25T20:00Z"), incidents=incidents(APRIL)
    )
    got = row(results, "gpu-1", EPOCH_25)
    assert got["credited_s"] == 20 * 3600 - (8 * 3600 + 5 * 60)  # 08:05 .. 20:00
    assert got["crediting_incidents"] == ["apr-25"]
    assert got["online_s"] + got["credited_s"] == DAY - 5 * 60  # 08:00-08:05 was the device's


def test_a_gap_starting_exactly_at_the_lookback_is_credited_and_a_microsecond_earlier_is_not() -> (
    None
):
    # A gap starts one period after the last heartbeat: last heartbeat at 07:04 -> gap 07:05.
    inside = outage("gpu-in", "2024-04-25T07:05Z", "2024-04-25T10:00Z")
    early = (
        heartbeats("gpu-out", start="2024-04-25T00:00Z", n=424),
        heartbeats("gpu-out", start="2024-04-25T07:03:59.999999Z"),
        heartbeats("gpu-out", start="2024-04-25T10:00Z", n=60),
    )
    results = run(*inside, *early, incidents=incidents(APRIL))
    assert row(results, "gpu-in", EPOCH_25)["credited_s"] == 10 * 3600 - (8 * 3600 + 5 * 60)
    assert row(results, "gpu-out", EPOCH_25)["credited_s"] == 0


def test_a_device_back_one_second_after_the_recovery_deadline_is_credited_until_the_deadline() -> (
    None
):
    # b + r = 2024-04-25T09:05 + 48 h = 2024-04-27T09:05, after the season: use a 12 h deadline
    twelve = {**APRIL, "deadline": "12h"}  # b + r = 21:05
    results = run(
        *outage("gpu-1", "2024-04-25T08:00Z", "2024-04-25T21:05:01Z"), incidents=incidents(twelve)
    )
    got = row(results, "gpu-1", EPOCH_25)
    assert got["credited_s"] == 13 * 3600
    assert got["longest_uncounted_gap_s"] == 5 * 60  # 08:00-08:05 (the 1 s after is shorter)


def test_overlapping_incidents_credit_their_union_once() -> None:
    both = incidents(
        APRIL,
        {"id": "later", "start": "2024-04-25T09:00Z", "end": "2024-04-25T12:00Z", "deadline": "1h"},
    )
    results = run(*outage("gpu-1", "2024-04-25T08:00Z", "2024-04-25T16:00Z"), incidents=both)
    got = row(results, "gpu-1", EPOCH_25)
    assert got["credited_s"] == 16 * 3600 - (8 * 3600 + 5 * 60)
    assert got["crediting_incidents"] == ["apr-25", "later"]


def test_a_bridged_gap_is_never_also_credited() -> None:
    frames = (
        heartbeats("gpu-1", start="2024-04-25T08:00Z", n=5, boot="a"),
        heartbeats("gpu-1", start="2024-04-25T08:15Z", n=5, boot="b"),
    )
    got = row(run(*frames, incidents=incidents(APRIL)), "gpu-1", EPOCH_25)
    assert (got["bridged_s"], got["credited_s"]) == (600, 0)


def test_device_id_scope_credits_only_the_listed_devices() -> None:
    scoped = incidents({**APRIL, "scope": {"device_ids": ["gpu-2"]}})
    results = run(
        *outage("gpu-1", "2024-04-25T08:00Z", "2024-04-25T12:00Z"),
        *outage("gpu-2", "2024-04-25T08:00Z", "2024-04-25T12:00Z"),
        incidents=scoped,
    )
    assert row(results, "gpu-1", EPOCH_25)["credited_s"] == 0
    assert row(results, "gpu-2", EPOCH_25)["credited_s"] > 0


def test_version_scope_compares_dotted_numbers_not_strings() -> None:
    scoped = incidents({**APRIL, "scope": {"agent_version_below": "1.10"}})
    frames = (
        *outage("old", "2024-04-25T08:00Z", "2024-04-25T12:00Z", version="1.9.10"),
        *outage("same", "2024-04-25T08:00Z", "2024-04-25T12:00Z", version="v1.10.0"),
    )
    versions = pl.DataFrame(
        {
            "incident_id": ["apr-25", "apr-25"],
            "device_id": ["old", "same"],
            "agent_version": ["1.9.10", "v1.10.0"],
        },
        schema=dict(INCIDENT_VERSIONS),
    )
    results = run(*frames, incidents=scoped, incident_versions=versions)
    assert row(results, "old", EPOCH_25)["credited_s"] > 0
    assert row(results, "same", EPOCH_25)["credited_s"] == 0
    with pytest.raises(IncidentScopeError):
        run(*frames, incidents=scoped)
    assert version_key("1.9.10") < version_key("1.10") == version_key("1.10.0")


# ---- 4.6 and 4.7: eligibility and reasons -------------------------------------------------


def test_ninety_percent_is_exact_77760_seconds_qualify_and_one_microsecond_less_does_not() -> None:
    # one heartbeat per 60 s covering [00:00, 21:36) = 77,760 s
    exact = heartbeats("gpu-ok", start="2024-04-25T00:00Z", n=1296)
    short = concat(
        heartbeats("gpu-short", start="2024-04-25T00:00Z", n=1295),
        heartbeats("gpu-short", start="2024-04-25T21:34:59.999999Z"),
    )
    results = run(exact, short)
    assert row(results, "gpu-ok", EPOCH_25)["eligible"] is True
    short_row = row(results, "gpu-short", EPOCH_25)
    assert short_row["reason"] == "BELOW_MIN_UPTIME"
    assert short_row["shortfall_s"] == pytest.approx(1e-6)


def test_reasons_in_order_suspended_eligible_no_heartbeats_below() -> None:
    meta = devices(("gpu-s", None, True), ("gpu-reg", "A100", False))
    results = run(
        day("gpu-s", "2024-04-25"),
        day("gpu-e", "2024-04-25"),
        heartbeats("gpu-b", start="2024-04-25T00:00Z", n=60),
        devices=meta,
    )
    reasons = {
        d: row(results, d, EPOCH_25)["reason"] for d in ("gpu-s", "gpu-e", "gpu-b", "gpu-reg")
    }
    assert reasons == {
        "gpu-s": "SUSPENDED",
        "gpu-e": "ELIGIBLE",
        "gpu-b": "BELOW_MIN_UPTIME",
        "gpu-reg": "NO_HEARTBEATS",
    }
    assert row(results, "gpu-s", EPOCH_25)["reward"] == 0


def test_every_known_device_has_a_row_for_every_epoch() -> None:
    results = run(day("gpu-1", "2024-04-25"), devices=devices(("gpu-2", None, False)))
    assert results.height == 2 * 7
    assert results.select("epoch", "device_id").rows()[:2] == [(0, "gpu-1"), (0, "gpu-2")]


# ---- 4.8: rewards ------------------------------------------------------------------------


def test_a_pool_that_does_not_divide_evenly_goes_to_the_largest_remainders() -> None:
    weights = pl.DataFrame({"epoch": [0, 0, 0], "device_id": ["c", "a", "b"], "weight": [1, 1, 1]})
    got = dict(allocate(weights, 10).select("device_id", "reward").rows())
    assert got == {"a": 4, "b": 3, "c": 3}


def test_ties_in_remainders_go_to_device_ids_in_byte_order() -> None:
    weights = pl.DataFrame({"epoch": [0, 0], "device_id": ["a", "Z"], "weight": [5, 5]})
    assert dict(allocate(weights, 1).select("device_id", "reward").rows()) == {"Z": 1, "a": 0}


def test_shares_follow_weight_with_products_beyond_64_bits() -> None:
    weights = pl.DataFrame(
        {
            "epoch": [0, 0],
            "device_id": ["big", "small"],
            "weight": [86_400_000_000 * 10, 86_400_000_000],
        }
    )
    pool = 2_000_000_000_000_000
    got = dict(allocate(weights, pool).select("device_id", "reward").rows())
    assert got["big"] + got["small"] == pool
    # remainders: 20e15 mod 11 = 2 for big, 2e15 mod 11 = 9 for small: small gets the unit
    assert got["big"] == pool * 10 // 11 and got["small"] == pool // 11 + 1


def test_tier_weight_comes_from_the_gpu_model_at_the_epoch_start() -> None:
    tiered = policy(tier_weights={"default": 1, "A100": 3}, pool_per_epoch=400)
    hb = concat(day("gpu-a", "2024-04-25"), day("gpu-b", "2024-04-25"))
    results = device_epochs(
        online_intervals(hb, tiered), tiered, devices=devices(("gpu-a", "A100", False))
    )
    assert (
        row(results, "gpu-a", EPOCH_25)["reward"],
        row(results, "gpu-b", EPOCH_25)["reward"],
    ) == (300, 100)


def test_an_epoch_with_no_eligible_device_pays_nothing_and_says_so() -> None:
    results = run(day("gpu-1", "2024-04-25"))
    payouts = epoch_payouts(results, P)
    assert payouts.filter(pl.col("epoch") == EPOCH_25)["paid"].item() == P.pool_per_epoch
    quiet = payouts.filter(pl.col("epoch") == 0).to_dicts()[0]
    assert quiet["paid"] == 0 and quiet["note"] == "no eligible device: nothing paid"


def test_metadata_is_taken_as_of_each_epoch_start() -> None:
    tiered = policy(tier_weights={"default": 1, "A100": 3, "H100": 5}, pool_per_epoch=800)
    history = pl.DataFrame(
        [
            {
                "device_id": "gpu-a",
                "gpu_model": "A100",
                "suspended": False,
                "valid_from": None,
                "valid_to": at("2024-04-25T12:00Z"),
            },
            {
                "device_id": "gpu-a",
                "gpu_model": "H100",
                "suspended": False,
                "valid_from": at("2024-04-25T12:00Z"),
                "valid_to": at("2024-04-27T00:00Z"),
            },
        ],
        schema=dict(DEVICES),
    )
    hb = concat(
        day("gpu-a", "2024-04-25"),
        day("gpu-a", "2024-04-26"),
        day("gpu-b", "2024-04-25"),
        day("gpu-b", "2024-04-26"),
    )
    results = device_epochs(online_intervals(hb, tiered), tiered, devices=history)
    # the 25th starts under A100 (3:1), the 26th under H100 (5:1)
    assert row(results, "gpu-a", EPOCH_25)["reward"] == 600
    assert row(results, "gpu-a", EPOCH_25 + 1)["reward"] == 667  # 800*5/6 = 666.67
    suspended = history.with_columns(suspended=pl.col("gpu_model") == "H100")
    results = device_epochs(online_intervals(hb, tiered), tiered, devices=suspended)
    assert row(results, "gpu-a", EPOCH_25)["reason"] == "ELIGIBLE"
    assert row(results, "gpu-a", EPOCH_25 + 1)["reason"] == "SUSPENDED"
    assert row(results, "gpu-b", EPOCH_25 + 1)["reward"] == 800
