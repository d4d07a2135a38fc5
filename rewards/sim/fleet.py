"""A seeded synthetic fleet and what the uptime API delivers of it. Pure: no I/O, no clock.

A device's life is a list of sessions (boot_id, agent_version, [start, end)); heartbeats
are sent every period inside a session with a little jitter. The delivery log is what the
API hands out, in its order: every heartbeat at least once, some duplicated (a few with a
disagreeing boot_id), some hours late, and optionally some malformed records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from rewards.core import HEARTBEATS, to_us, unique_heartbeats

US = 1_000_000
MINUTE = 60 * US
HOUR = 60 * MINUTE
SCENARIOS = ("steady", "april-2024")
FORCED_UPGRADE = datetime(2024, 4, 25, 8, 5, tzinfo=UTC)
METADATA_SURGE = datetime(2024, 4, 25, 9, 5, tzinfo=UTC)  # 1:05 a.m. PST
SURGE_ACTOR = "worker-api:svc-7"  # the leaked worker credential the unauthorised writes used
OLD_VERSIONS = ("0.9.8", "0.9.9", "0.9.10")
FIXED_VERSION = "0.10.0"
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
        if self.start.utcoffset() is None:
            raise ValueError("start must be a UTC time")

    @property
    def start_us(self) -> int:
        return to_us(self.start)

    @property
    def end_us(self) -> int:
        return self.start_us + self.days * 24 * HOUR


Session = tuple[int, int, str, str]


def _device_sessions(spec: FleetSpec, rng: np.random.Generator, index: int) -> list[Session]:
    """Sessions (start_us, end_us, boot_id, agent_version) of one device, in time order."""
    begin, finish = spec.start_us, spec.end_us
    kind = rng.choice(
        ["steady", "flaky", "joiner", "leaver", "outage"], p=[0.70, 0.13, 0.07, 0.05, 0.05]
    )
    if kind == "joiner":
        begin += int(rng.integers(0, (finish - begin) // 2))
    if kind == "leaver":
        finish -= int(rng.integers(0, (finish - begin) // 2))
    # Gaps are drawn in units of one-minute heartbeats and scaled, so a fleet simulated
    # with a longer period keeps the same shape relative to its liveness timeout.
    scale = spec.heartbeat_period_s / 60
    mean_up = 2 * HOUR if kind == "flaky" else 14 * HOUR
    version = str(rng.choice(OLD_VERSIONS))
    boots = 0
    forced = to_us(FORCED_UPGRADE) if spec.scenario == "april-2024" else None

    def new_boot() -> str:
        nonlocal boots
        boots += 1
        return f"{index:06x}-{boots:04x}-{int(rng.integers(0, 1 << 32)):08x}"

    sessions: list[Session] = []
    t, boot = begin, new_boot()
    while t < finish:
        end = min(finish, t + int(rng.exponential(mean_up)) + 5 * MINUTE)
        if forced is not None and t < forced <= end:
            # The forced upgrade: almost everyone goes silent, most return upgraded.
            sessions.append((t, forced - int(rng.integers(0, MINUTE)), boot, version))
            version = FIXED_VERSION
            fate = rng.random()
            if fate < 0.02:
                t = forced + int(scale * rng.integers(30 * US, 3 * MINUTE))
            elif fate < 0.87:
                t = forced + int(rng.gamma(2.0, 8 * HOUR)) + 5 * MINUTE
            else:
                break
            boot = new_boot()
            continue
        sessions.append((t, end, boot, version))
        event = rng.random()
        if event < 0.45:  # restart: new boot after a short gap
            gap, boot = int(scale * rng.integers(60 * US, 12 * MINUTE)), new_boot()
        elif event < 0.75:  # network blip: same boot, gap past the liveness timeout
            gap = int(scale * rng.integers(100 * US, 6 * MINUTE))
        elif event < 0.82 and (forced is None or end > forced):  # upgrade
            gap, boot = int(scale * rng.integers(60 * US, 5 * MINUTE)), new_boot()
            version = "0.10.1" if version == FIXED_VERSION else version
        else:  # long outage
            gap, boot = int(rng.integers(1 * HOUR, 9 * HOUR)), new_boot()
        t = end + gap
    return sessions


def fleet_sessions(spec: FleetSpec) -> pl.DataFrame:
    """Every device's online sessions: device_id, start_us, end_us, boot_id, agent_version."""
    rng = np.random.default_rng(spec.seed)
    rows: list[tuple[str, int, int, str, str]] = []
    for index in range(spec.devices):
        device_id = f"gpu-{index:06d}"
        rows.extend((device_id, *s) for s in _device_sessions(spec, rng, index))
    return pl.DataFrame(
        rows,
        schema={
            "device_id": pl.String,
            "start_us": pl.Int64,
            "end_us": pl.Int64,
            "boot_id": pl.String,
            "agent_version": pl.String,
        },
        orient="row",
    )


def _heartbeats_of_sessions(spec: FleetSpec, sessions: pl.DataFrame) -> pl.DataFrame:
    period = spec.heartbeat_period_s * US
    rows = (
        sessions.filter(pl.col("end_us") > pl.col("start_us"))
        .with_columns(k=pl.int_ranges(0, (pl.col("end_us") - pl.col("start_us")) // period + 1))
        .explode("k")
    )
    rng = np.random.default_rng(spec.seed + 1)
    # Jitter under 2% of the period keeps consecutive gaps well inside a 1.5 P timeout.
    jitter = rng.integers(0, max(1, period // 50), rows.height)
    return rows.select(
        "device_id",
        (pl.col("start_us") + pl.col("k") * period + pl.Series(jitter)).alias("observed_us"),
        "boot_id",
        "agent_version",
    ).filter(pl.col("observed_us") < spec.end_us)


def _bad_records(spec: FleetSpec, count: int, rng: np.random.Generator) -> list[str]:
    good = {
        "device_id": "gpu-bad",
        "observed_at": "2024-04-21T00:00:00Z",
        "boot_id": "b",
        "agent_version": "0.9.9",
    }
    kinds: list[Callable[[], str]] = [
        lambda: json.dumps({k: v for k, v in good.items() if k != "boot_id"}),
        lambda: json.dumps({**good, "device_id": "gpu\u0000x"}),
        lambda: json.dumps({**good, "observed_at": "2024-04-21T00:00:00"}),
        lambda: json.dumps({**good, "observed_at": "2024-02-30T00:00:00Z"}),
        lambda: json.dumps({**good, "observed_at": "2099-01-01T00:00:00Z"}),
        lambda: json.dumps(good).replace('"b"', '"\\ud800"'),
        lambda: json.dumps(good).replace('"gpu-bad"', "12"),
        lambda: json.dumps(good).replace('"0.9.9"', "NaN"),
        lambda: json.dumps(good).replace('"b"', "123456789012345678901234567890"),
        lambda: '"not an object"',
        lambda: json.dumps({**good, "device_id": ""}),
    ]
    return [kinds[int(i)]() for i in rng.integers(0, len(kinds), count)]


def delivery_log(spec: FleetSpec) -> pl.DataFrame:
    """What the API delivers, in its order: device_id, observed_us, boot_id, agent_version,
    received_us and `raw` (the verbatim JSON of a malformed record, null for good ones)."""
    truth = _heartbeats_of_sessions(spec, fleet_sessions(spec))
    rng = np.random.default_rng(spec.seed + 2)
    n = truth.height
    delay = rng.integers(US // 5, 5 * US, n)
    late = rng.random(n) < spec.late_rate
    delay = np.where(late, delay + rng.integers(1 * HOUR, 6 * HOUR, n), delay)
    log = truth.with_columns(received_us=pl.col("observed_us") + pl.Series(delay))
    dups = log.filter(pl.Series(rng.random(n) < spec.duplicate_rate))
    dups = dups.with_columns(
        received_us=pl.col("received_us") + pl.Series(rng.integers(0, 30 * MINUTE, dups.height))
    )
    conflicts = log.filter(pl.Series(rng.random(n) < spec.conflict_rate))
    # A disagreeing duplicate: "!" sorts before every id character (it wins), "~" after.
    prefix = pl.Series(np.where(rng.random(conflicts.height) < 0.5, "!", "~"))
    conflicts = conflicts.with_columns(
        boot_id=pl.concat_str([prefix, pl.col("boot_id")]),
        received_us=pl.col("received_us") + pl.Series(rng.integers(0, 2 * HOUR, conflicts.height)),
    )
    parts = [log, dups, conflicts]
    bad_count = round(n * spec.bad_record_rate)
    parts = [p.with_columns(raw=pl.lit(None, pl.String)) for p in parts]
    if bad_count:
        raws = _bad_records(spec, bad_count, rng)
        parts.append(
            pl.DataFrame(
                {
                    "device_id": ["gpu-bad"] * bad_count,
                    "observed_us": [0] * bad_count,
                    "boot_id": [""] * bad_count,
                    "agent_version": [""] * bad_count,
                    "received_us": rng.integers(spec.start_us, spec.end_us, bad_count),
                    "raw": raws,
                },
                schema=parts[0].schema,
            )
        )
    combined = pl.concat(parts).with_row_index("seq")
    return combined.sort(["received_us", "seq"]).drop("seq")


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
    base = pl.DataFrame(
        {
            "device_id": [f"gpu-{i:06d}" for i in range(n)],
            "owner_id": [f"owner-{int(o):05d}" for o in rng.integers(0, owners, n)],
            "gpu_model": [GPU_MODELS[int(m)] for m in rng.integers(0, len(GPU_MODELS), n)],
            "gpu_count": rng.integers(1, 9, n),
            "registered_us": registered,
            "updated_us": registered,
            "status": ["active"] * n,
            "updated_by": ["registry"] * n,
        }
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
