"""Builders that keep test frames readable: heartbeats("gpu-1", start=..., every="60s", n=5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from rewards.core import (
    DEVICES,
    HEARTBEATS,
    INCIDENTS,
    IncidentScope,
    parse_duration_us,
    parse_policy,
)
from rewards.core.policy import SeasonPolicy


def at(text: str) -> datetime:
    """An aware UTC datetime from '2024-04-25T08:00Z' and the like."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def heartbeats(
    device: str,
    *,
    start: str,
    every: str = "60s",
    n: int = 1,
    boot: str = "boot-1",
    version: str = "1.0.0",
) -> pl.DataFrame:
    """`n` heartbeats of `device` from `start`, one every `every`."""
    step = timedelta(microseconds=parse_duration_us(every))
    first = at(start)
    return pl.DataFrame(
        {
            "device_id": [device] * n,
            "observed_at": [first + i * step for i in range(n)],
            "boot_id": [boot] * n,
            "agent_version": [version] * n,
        },
        schema=dict(HEARTBEATS),
    )


def concat(*frames: pl.DataFrame) -> pl.DataFrame:
    return pl.concat(frames)


def policy(**overrides: object) -> SeasonPolicy:
    """The default season policy of DESIGN 4 over a short test season."""
    data: dict[str, object] = {
        "id": "test",
        "name": "Test season",
        "start": "2024-04-20T00:00:00Z",
        "end": "2024-04-27T00:00:00Z",
        "pool_per_epoch": 1_000_000,
        "token_decimals": 6,
    }
    data.update(overrides)
    return parse_policy(data)


def incidents(*rows: dict[str, object]) -> pl.DataFrame:
    """Confirmed incidents: dicts with id, start, end, deadline ('48h') and scope."""
    records = []
    for row in rows:
        scope = IncidentScope.parse(row.get("scope", {"all": True}))
        records.append(
            {
                "incident_id": row["id"],
                "start": at(str(row["start"])),
                "end": at(str(row["end"])),
                "recovery_deadline_us": parse_duration_us(row.get("deadline", "0s")),
                **scope.columns(),
            }
        )
    return pl.DataFrame(records, schema=dict(INCIDENTS))


def devices(*rows: tuple[str, str | None, bool]) -> pl.DataFrame:
    """Device metadata valid throughout: (device_id, gpu_model, suspended)."""
    return pl.DataFrame(
        [
            {"device_id": d, "gpu_model": m, "suspended": s, "valid_from": None, "valid_to": None}
            for d, m, s in rows
        ],
        schema=dict(DEVICES),
    )
