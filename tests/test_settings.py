"""Settings: the values built from them are built once, as properties of Settings."""

from __future__ import annotations

from datetime import timedelta

from rewards.core.limits import IngestLimits, RetryPolicy
from rewards.core.surges import SurgePolicy
from rewards.settings import get_settings


def test_derived_values_are_built_from_their_settings() -> None:
    settings = get_settings(
        job_lock_s=45,
        snapshot_settlement_s=90,
        surge_baseline_minutes=15,
        surge_factor=2.5,
        surge_min_writes=7,
        max_attempts=3,
        backoff_base_s=0.25,
        backoff_max_s=4.0,
        max_retry_after_s=20.0,
        ingest_deadline_s=60.0,
        ingest_max_pages=11,
        ingest_max_bytes=1024,
        ingest_max_idle_pages=5,
        ingest_max_idle_in_a_row=2,
    )

    assert settings.job_lock == timedelta(seconds=45)
    assert settings.settlement == timedelta(seconds=90)
    assert settings.surges == SurgePolicy(baseline_minutes=15, factor=2.5, min_writes=7)
    assert settings.retry == RetryPolicy(
        max_attempts=3, backoff_base_s=0.25, backoff_max_s=4.0, max_retry_after_s=20.0
    )
    assert settings.ingest_limits == IngestLimits(
        deadline_s=60.0, max_pages=11, max_bytes=1024, max_idle_pages=5, max_idle_in_a_row=2
    )
