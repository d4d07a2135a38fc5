"""A seeded synthetic fleet and what the uptime API delivers of it. Pure: no I/O, no clock.

The heartbeat feed streams: `fleet_feed(spec)` makes any window of deliveries on demand
from the seed (rewards.sim.timeline says who is online when, rewards.sim.feed what is
delivered when), so a fleet of 600,000 devices over 30 days serves from constant memory
(DESIGN 8). Every heartbeat is delivered at least once, some duplicated (a few with a
disagreeing boot_id), some hours late, and optionally some malformed records. The device
registry feed is small (a record or so per device) and is made whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from rewards.core import HEARTBEATS, to_us, unique_heartbeats
from rewards.sim.feed import Feed, Rates
from rewards.sim.timeline import HOUR, MINUTE, US, Geometry

SCENARIOS = ("steady", "april-2024")
FORCED_UPGRADE = datetime(2024, 4, 25, 8, 5, tzinfo=UTC)
METADATA_SURGE = datetime(2024, 4, 25, 9, 5, tzinfo=UTC)  # 1:05 a.m. PST
SURGE_ACTOR = "worker-api:svc-7"  # the leaked worker credential the unauthorised writes used
GPU_MODELS = ("RTX 3090", "RTX 4090", "A100", "H100", "RTX A6000")


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate. Equal specs give byte-identical fleets and delivery logs."""

    seed: int = 1
    devices: int = 200
    days: int = 7
    scenario: str = "april-2024"
    start: datetime = datetime(2024, 4, 20, tzinfo=UTC)
    heartbeat_period_s: int = 60
    duplicate_rate: float = 0.01
    conflict_rate: float = 0.0005
    late_rate: float = 0.005
    bad_record_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; choose one of {SCENARIOS}")
        if self.devices < 1 or self.days < 1 or self.heartbeat_period_s < 1:
            raise ValueError("devices, days and heartbeat_period_s must be positive")
        if self.heartbeat_period_s > 3600:
            # A device's day is cut into slots; outages of hours need many slots a day.
            raise ValueError("heartbeat_period_s must be at most 3600 (one hour)")
        if self.start.utcoffset() is None:
            raise ValueError("start must be a UTC time")

    @property
    def start_us(self) -> int:
        return to_us(self.start)

    @property
    def end_us(self) -> int:
        return self.start_us + self.days * 24 * HOUR


def fleet_feed(spec: FleetSpec) -> Feed:
    """The heartbeat delivery feed of `spec`, made window by window on demand."""
    return Feed(
        seed=spec.seed,
        devices=spec.devices,
        geometry=Geometry(spec.start_us, spec.end_us, spec.heartbeat_period_s * US),
        forced_us=to_us(FORCED_UPGRADE) if spec.scenario == "april-2024" else None,
        rates=Rates(
            duplicate=spec.duplicate_rate,
            conflict=spec.conflict_rate,
            late=spec.late_rate,
            bad_record=spec.bad_record_rate,
        ),
    )


def delivery_log(spec: FleetSpec) -> pl.DataFrame:
    """What the API delivers, in its order: device_id, observed_us, boot_id, agent_version,
    received_us and `raw` (the verbatim JSON of a malformed record, null for good ones).

    The whole season at once: for small fleets and tests; the server streams windows."""
    return fleet_feed(spec).log()


def delivered_heartbeats(log: pl.DataFrame) -> pl.DataFrame:
    """The heartbeats a correct client must end up storing: good rows, deduplicated."""
    good = log.filter(pl.col("raw").is_null()).select(
        "device_id",
        pl.col("observed_us").cast(pl.Datetime("us", "UTC")).alias("observed_at"),
        "boot_id",
        "agent_version",
    )
    return unique_heartbeats(good.cast(pl.Schema(HEARTBEATS)))


def device_feed(spec: FleetSpec) -> pl.DataFrame:
    """Registry records in API order: one per device, plus changes and duplicates.

    In the april-2024 scenario about 1% of devices get their gpu_model rewritten in a burst
    within the minute 09:05Z on 25 April, the unauthorised metadata writes of the incident,
    all by SURGE_ACTOR (`updated_by`; the registry's own writes say "registry").
    """
    rng = np.random.default_rng(spec.seed + 3)
    n = spec.devices
    owners = max(1, n // 5)
    registered = spec.start_us - rng.integers(1 * HOUR, 90 * 24 * HOUR, n)
    # Strings are made by polars, not Python: 600,000 devices start in a second.
    draws = pl.DataFrame(
        {
            "index": np.arange(n),
            "owner": rng.integers(0, owners, n),
            "model": rng.integers(0, len(GPU_MODELS), n),
            "gpu_count": rng.integers(1, 9, n),
            "registered_us": registered,
        }
    )
    base = draws.select(
        device_id=pl.lit("gpu-") + pl.col("index").cast(pl.String).str.zfill(6),
        owner_id=pl.lit("owner-") + pl.col("owner").cast(pl.String).str.zfill(5),
        gpu_model=pl.col("model").replace_strict(
            dict(enumerate(GPU_MODELS)), return_dtype=pl.String
        ),
        gpu_count="gpu_count",
        registered_us="registered_us",
        updated_us="registered_us",
        status=pl.lit("active"),
        updated_by=pl.lit("registry"),
    )
    changes = base.filter(pl.Series(rng.random(n) < 0.05))
    changes = changes.with_columns(
        updated_us=pl.Series(rng.integers(spec.start_us, spec.end_us, changes.height)),
        status=pl.Series(np.where(rng.random(changes.height) < 0.5, "suspended", "active")),
        gpu_count=pl.col("gpu_count") + 1,
    )
    parts = [base, changes]
    if spec.scenario == "april-2024":
        surge = base.filter(pl.Series(rng.random(n) < 0.01))
        surge = surge.with_columns(
            gpu_model=pl.lit("H100"),
            updated_by=pl.lit(SURGE_ACTOR),
            updated_us=to_us(METADATA_SURGE) + pl.Series(rng.integers(0, MINUTE, surge.height)),
        )
        parts.append(surge)
    feed = pl.concat(parts)
    dups = feed.filter(pl.Series(rng.random(feed.height) < 0.02))
    return pl.concat([feed, dups]).with_row_index("seq").sort(["updated_us", "seq"]).drop("seq")
