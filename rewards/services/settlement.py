"""When an epoch has closed and settled (DESIGN 10): on the observed_at watermark of the
ingested feed plus the settlement delay, never on the local clock alone. Every caller that
needs "the epochs a snapshot may cover now" (CLI, API, pages, scheduler) asks here."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from rewards.core import SeasonPolicy, closed_epochs, from_us
from rewards.db import state
from rewards.db.engine import unit_of_work

HEARTBEATS = "heartbeats"  # the stream whose observed_at times close epochs


def feed_watermark(engine: Engine) -> datetime | None:
    """The latest observed_at of the ingested heartbeats, None before the first one."""
    with unit_of_work(engine) as session:
        mark = state.watermark(session, HEARTBEATS)
    return None if mark is None else from_us(mark)


def settled_epochs(
    engine: Engine, policy: SeasonPolicy, *, now: datetime, settlement: timedelta
) -> range:
    """The epochs of `policy` that have closed and settled: each ended at least
    `settlement` before both `now` and the feed's watermark (a feed outage holds them)."""
    return closed_epochs(
        policy,
        now,
        settlement // timedelta(microseconds=1),
        watermark=feed_watermark(engine),
    )
