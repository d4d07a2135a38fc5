"""Prometheus metrics of ingestion (issue 12 item 19), served on the API's /metrics.

One registry per process (`INGEST_METRICS`): `rewards serve` runs the scheduler's pulls and
the API in one process, so what the pulls count is what /metrics shows.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge

from rewards.uptime.records import reason_code


class IngestMetrics:
    """Counters of what the pulls did, by stream, and the heartbeat lag gauge."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.pulled = Counter(
            "rewards_ingest_records_pulled", "Records received from the uptime API",
            ["stream"], registry=r,
        )  # fmt: skip
        self.stored = Counter(
            "rewards_ingest_records_stored", "Records stored (new, or a winning duplicate)",
            ["stream"], registry=r,
        )  # fmt: skip
        self.quarantined = Counter(
            "rewards_ingest_records_quarantined", "Records refused, by the code of the reason",
            ["stream", "reason"], registry=r,
        )  # fmt: skip
        self.conflicting = Counter(
            "rewards_ingest_heartbeats_conflicting",
            "Heartbeats disagreeing with another of the same device and observed_at",
            registry=r,
        )
        self.pages = Counter(
            "rewards_ingest_pages", "Pages received from the uptime API", ["stream"], registry=r
        )
        self.retries = Counter(
            "rewards_ingest_retries", "Page requests retried", ["stream"], registry=r
        )
        self.lag = Gauge(
            "rewards_ingest_heartbeat_lag_seconds",
            "Seconds between the last pull and the newest observed_at ingested",
            registry=r,
        )
        self.newest: datetime | None = None

    def page(
        self,
        stream: str,
        *,
        pulled: int,
        stored: int,
        conflicting: int,
        reasons: list[str],
        retries: int,
    ) -> None:
        """Count one page of `stream` and the retries it took. A quarantined record is
        counted under its reason's code (rewards.uptime.records.REASON_CODES, "other" for
        none), never words of the reason: the reason names the record's values, so
        matching words would count a bad time spelled "identifier" as a bad identifier."""
        self.pages.labels(stream).inc()
        self.pulled.labels(stream).inc(pulled)
        self.stored.labels(stream).inc(stored)
        self.retries.labels(stream).inc(retries)
        self.conflicting.inc(conflicting)
        for reason in reasons:
            self.quarantined.labels(stream, reason_code(reason)).inc()

    def observed(self, newest: datetime | None, *, now: datetime) -> None:
        """Note the newest observed_at of a page (if any) and set the lag as of `now`."""
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest
        if self.newest is not None:
            self.lag.set((now - self.newest).total_seconds())


INGEST_METRICS = IngestMetrics()
