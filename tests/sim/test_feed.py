"""The streaming feed: windows made on demand, resumable cursors, the truth of a window."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from rewards.core import to_us
from rewards.sim.feed import MAX_LATENESS
from rewards.sim.fleet import (
    FORCED_UPGRADE,
    FleetSpec,
    delivered_heartbeats,
    delivery_log,
    fleet_feed,
)
from rewards.sim.records import BAD_RECORDS
from rewards.sim.server import BadCursor, heartbeat_page

SPEC = FleetSpec(
    seed=11,
    devices=150,
    days=2,
    duplicate_rate=0.02,
    conflict_rate=0.005,
    late_rate=0.01,
    bad_record_rate=0.001,
)


def read_all(spec: FleetSpec, limit: int) -> pl.DataFrame:
    feed, cursor, more, pages = fleet_feed(spec), "", True, []
    while more:
        page, cursor, more = heartbeat_page(feed, cursor, limit)
        pages.append(page)
    return pl.concat(pages)


@pytest.mark.parametrize("limit", [97, 5_000, 50_000])
def test_the_same_seed_delivers_the_same_bytes_whatever_the_page_size(limit: int) -> None:
    assert read_all(SPEC, limit).equals(delivery_log(SPEC))


def test_a_cursor_alone_resumes_the_feed_on_a_fresh_simulator() -> None:
    first, cursor, more = heartbeat_page(fleet_feed(SPEC), "", 1_234)
    rest, _, _ = heartbeat_page(fleet_feed(SPEC), cursor, 1_000)  # no state carried over
    assert more
    assert pl.concat([first, rest]).equals(delivery_log(SPEC).head(2_234))


@pytest.mark.parametrize("cursor", ["x", "1", "-1.0", "0.-3", "99999999.0"])
def test_a_cursor_the_feed_did_not_hand_out_is_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        heartbeat_page(fleet_feed(SPEC), cursor, 10)


def test_the_log_has_every_kind_of_delivery_in_received_order() -> None:
    log = delivery_log(SPEC)
    good = log.filter(pl.col("raw").is_null())
    assert log.get_column("received_us").is_sorted()
    assert good.get_column("observed_us").is_sorted() is False  # out of order
    lateness = good.get_column("received_us") - good.get_column("observed_us")
    assert (lateness > to_us_hours(1)).sum() > 0  # hours late
    keys = good.select("device_id", "observed_us")
    assert keys.is_duplicated().sum() > 0  # duplicates
    versions = good.unique(["device_id", "observed_us", "boot_id"])
    assert versions.height > keys.unique().height  # conflicting duplicates
    assert set(log.get_column("raw").drop_nulls()) <= set(BAD_RECORDS)
    assert log.get_column("raw").drop_nulls().len() > 0


def to_us_hours(hours: int) -> int:
    return hours * 3_600_000_000


def test_a_dump_of_a_window_is_the_dedup_of_everything_delivered_for_it() -> None:
    low = FORCED_UPGRADE - timedelta(hours=2)
    high = FORCED_UPGRADE + timedelta(hours=3)
    spec = FleetSpec(**{**SPEC.__dict__, "start": FORCED_UPGRADE - timedelta(days=1)})
    feed = fleet_feed(spec)
    windows = range(
        (to_us(low) - spec.start_us) // feed.window_us,
        (to_us(high) + MAX_LATENESS - spec.start_us) // feed.window_us + 1,
    )
    delivered = pl.concat([feed.render(feed.window(j)) for j in windows]).filter(
        pl.col("observed_us").is_between(to_us(low), to_us(high), closed="left")
    )
    truth = fleet_feed(spec).truth(to_us(low), to_us(high))
    assert truth.height > 0
    assert truth.equals(delivered_heartbeats(delivered))


def test_a_whole_season_dump_is_the_dedup_of_the_whole_log() -> None:
    assert (
        fleet_feed(SPEC)
        .truth(SPEC.start_us, SPEC.end_us)
        .equals(delivered_heartbeats(delivery_log(SPEC)))
    )


def test_late_deliveries_fall_due_after_the_season_and_the_feed_ends_after_them() -> None:
    log = delivery_log(SPEC)
    after = log.filter(pl.col("received_us") >= SPEC.end_us)
    assert after.height > 0 and after.get_column("observed_us").max() < SPEC.end_us  # type: ignore[operator]
