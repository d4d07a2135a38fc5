"""Epochs close on the ingested feed's observed_at watermark plus the settlement delay, not
on the wall clock alone (DESIGN 10): a feed outage does not close, or snapshot, the epochs
it left empty. Both databases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, text

from jobs.snapshots import snapshot_job
from rewards.core.frames import from_us, to_us
from rewards.services.settlement import feed_watermark, settled_epochs
from rewards.settings import get_settings
from tests.seeded import POLICY

SETTLEMENT = timedelta(hours=2)


def test_the_watermark_is_the_latest_observed_at_the_feed_has_delivered(ingested: Engine) -> None:
    with ingested.connect() as connection:
        latest = connection.execute(text("SELECT max(observed_at) FROM heartbeats")).scalar_one()
    assert feed_watermark(ingested) == from_us(int(latest))


def test_a_feed_outage_does_not_close_epochs_though_the_wall_clock_moved_on(
    ingested: Engine,
) -> None:
    mark = feed_watermark(ingested)
    assert mark is not None
    day = timedelta(microseconds=POLICY.epoch_length_us)
    settled_by_feed = (mark - SETTLEMENT - POLICY.start) // day
    assert 0 < settled_by_feed < POLICY.epoch_count - 10
    # the feed stopped at `mark`; the clock went on for ten more days
    later = mark + 10 * day
    assert settled_epochs(ingested, POLICY, now=later, settlement=SETTLEMENT) == range(
        settled_by_feed
    )
    # the clock still has its say: nothing closes before it either
    early = POLICY.start + 2 * day + SETTLEMENT
    assert settled_epochs(ingested, POLICY, now=early, settlement=SETTLEMENT) == range(2)

    settings = get_settings(snapshot_settlement_s=7200, job_lock_s=60)
    job = snapshot_job(ingested, settings, POLICY, clock=lambda: later)
    made = job()
    assert made is not None
    assert (made.epoch_first, made.epoch_last) == (0, settled_by_feed - 1)
    assert job() is None  # nothing more settles while the feed is silent
    assert to_us(mark) == to_us(feed_watermark(ingested) or POLICY.start)


def test_before_any_heartbeat_is_ingested_no_epoch_has_closed(engine: Engine) -> None:
    far = POLICY.start + timedelta(days=400)
    assert settled_epochs(engine, POLICY, now=far, settlement=SETTLEMENT) == range(0)
