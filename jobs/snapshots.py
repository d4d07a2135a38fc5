"""The scheduled snapshot: after each epoch closes and settles, a new draft for the season;
and the eligibility view suppliers read, rebuilt every few minutes when its inputs changed.

An epoch is settled `snapshot_settlement_s` after it ends, on the wall clock and on the
observed_at watermark of the ingested feed (DESIGN 10), so that late heartbeats (the uptime
API delivers them hours late at times) are in before its rewards are computed, and a feed
outage does not close an epoch it left empty. The
draft waits for an admin to publish it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from rewards.core import SeasonPolicy
from rewards.db.eligibility_views import ViewHeader
from rewards.db.tables import Snapshot
from rewards.services.eligibility_view import ViewError, refresh_view
from rewards.services.runs import JobBusy
from rewards.services.settlement import settled_epochs
from rewards.services.snapshots import SnapshotError, covering_snapshot, label, run_snapshot
from rewards.settings import Settings

log = logging.getLogger("rewards.jobs")
SNAPSHOT_JOB_ID = "scheduled-snapshot"
VIEW_JOB_ID = "scheduled-eligibility-view"


def due_epochs(
    engine: Engine, policy: SeasonPolicy, *, now: datetime, settlement: timedelta
) -> range:
    """The epochs a scheduled snapshot should cover now; empty when none is due (nothing
    settled yet on the clock and the feed's watermark, or a snapshot from epoch 0 through
    the last settled epoch exists)."""
    settled = settled_epochs(engine, policy, now=now, settlement=settlement)
    if not settled or covering_snapshot(engine, policy.season_id, settled) is not None:
        return range(0)
    return settled


def snapshot_job(
    engine: Engine, settings: Settings, policy: SeasonPolicy, *, clock: Callable[[], datetime]
) -> Callable[[], Snapshot | None]:
    """The scheduled job: a draft snapshot once a new epoch has settled (else nothing)."""

    def run() -> Snapshot | None:
        epochs = due_epochs(
            engine,
            policy,
            now=clock(),
            settlement=settings.settlement,
        )
        if not epochs:
            return None
        try:
            outcome = run_snapshot(
                engine,
                policy,
                epochs=epochs,
                trigger="scheduled",
                triggered_by="scheduler",
                reason=f"epoch {epochs.stop - 1} closed and settled",
                clock=clock,
                lock_ttl=settings.job_lock,
            )
        except JobBusy as busy:
            log.warning("%s", busy)
            return None
        except SnapshotError as exc:
            log.error("scheduled snapshot failed: %s", exc)
            return None
        log.info("scheduled snapshot %s (epochs 0-%d)", label(outcome.snapshot), epochs.stop - 1)
        return outcome.snapshot

    return run


def view_job(
    engine: Engine, settings: Settings, policy: SeasonPolicy, *, clock: Callable[[], datetime]
) -> Callable[[], ViewHeader | None]:
    """The scheduled job: rebuild the season's eligibility view when its inputs changed."""

    def run() -> ViewHeader | None:
        try:
            outcome = refresh_view(
                engine,
                policy,
                trigger="scheduled",
                clock=clock,
                lock_ttl=settings.job_lock,
            )
        except JobBusy as busy:
            log.warning("%s", busy)
            return None
        except ViewError as exc:
            log.info("eligibility view: %s", exc)
            return None
        if outcome.created:
            log.info("eligibility view %s: %d device-epochs", outcome.view.id, outcome.view.rows)
        return outcome.view

    return run
