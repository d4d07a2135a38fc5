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
from datetime import datetime

from sqlalchemy import Engine

from rewards.core import SeasonPolicy
from rewards.services.archive import open_archive
from rewards.services.computing import plan_of
from rewards.services.eligibility_view import ViewError, ViewHeader, refresh_view
from rewards.services.errors import ComputeUnavailable
from rewards.services.publication_key import KeyProblem, publication_key
from rewards.services.records import SnapshotRecord
from rewards.services.runs import JobBusy
from rewards.services.snapshot_runs import run_due
from rewards.services.snapshots import SnapshotError, label
from rewards.settings import Settings

log = logging.getLogger("rewards.jobs")
SNAPSHOT_JOB_ID = "scheduled-snapshot"
VIEW_JOB_ID = "scheduled-eligibility-view"


def snapshot_job(
    engine: Engine, settings: Settings, policy: SeasonPolicy, *, clock: Callable[[], datetime]
) -> Callable[[], SnapshotRecord | None]:
    """The scheduled job: a draft snapshot once a new epoch has settled (else nothing)."""

    def run() -> SnapshotRecord | None:
        try:
            outcome = run_due(
                engine,
                policy,
                settlement=settings.settlement,
                lock_ttl=settings.job_lock,
                archive=open_archive(settings.archive_url),
                clock=clock,
                key=publication_key(settings.publication_key_path),
                plan=plan_of(settings),
                keep=settings.snapshot_inputs_path,
            )
        except JobBusy as busy:
            log.warning("%s", busy)
            return None
        except (SnapshotError, ComputeUnavailable, KeyProblem) as exc:
            log.error("scheduled snapshot failed: %s", exc)
            return None
        if outcome is None:
            return None
        snap = outcome.snapshot
        log.info("scheduled snapshot %s (epochs %d-%d)", label(snap), snap.epoch_first,
                 snap.epoch_last)  # fmt: skip
        return snap

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
                archive=open_archive(settings.archive_url),
                plan=plan_of(settings),
            )
        except JobBusy as busy:
            log.warning("%s", busy)
            return None
        except ViewError as exc:
            log.info("eligibility view: %s", exc)
            return None
        except ComputeUnavailable as exc:
            log.error("eligibility view failed: %s", exc)
            return None
        if outcome.created:
            log.info("eligibility view %s: %d device-epochs", outcome.view.id, outcome.view.rows)
        return outcome.view

    return run
