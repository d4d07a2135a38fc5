"""What reading the uptime API may cost (DESIGN 6, 10): the retries of one page and the
budgets of one ingest run. Plain values, built from settings by `Settings.retry` and
`Settings.ingest_limits`; the uptime client and the ingest service enforce them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How the uptime client retries a page that failed transiently (DESIGN 6): up to
    `max_attempts` tries, waiting `backoff_base_s` doubled per attempt up to
    `backoff_max_s`, and at most `max_retry_after_s` when the API asks for longer."""

    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 300.0


@dataclass(frozen=True)
class IngestLimits:
    """What one run may spend (DESIGN 10): wall-clock time, pages, bytes of bodies, and
    pages without progress (no valid records though more are promised), in all and in a row.
    A run past any of them fails with its reason, the cursor at the last committed page."""

    deadline_s: float = 3600.0
    max_pages: int = 50_000
    max_bytes: int = 16 * 1024**3
    max_idle_pages: int = 100
    max_idle_in_a_row: int = 10
