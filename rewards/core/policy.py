"""SeasonPolicy: the validated, immutable parameters of a rewards season (DESIGN 4).

`parse_policy` turns a mapping (a parsed TOML file) into a policy or raises PolicyError
naming the offending key. Reading the file is the shell's job; this module does no I/O.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from rewards.core.durations import format_duration_us, parse_duration_us

_DURATION_DEFAULTS_US = {
    "heartbeat_period": 60_000_000,
    "liveness_timeout": 90_000_000,
    "restart_grace": 900_000_000,
    "incident_lookback": 3_600_000_000,
    "epoch_length": 86_400_000_000,
}
_REQUIRED = ("id", "name", "start", "end", "pool_per_epoch", "token_decimals")
_KNOWN = {
    *_REQUIRED,
    *_DURATION_DEFAULTS_US,
    "max_bridges_per_epoch",
    "min_uptime_ratio",
    "tier_weights",
}


class PolicyError(ValueError):
    """A season policy is invalid; the message names the key and what to do."""


@dataclass(frozen=True)
class SeasonPolicy:
    """Every parameter of DESIGN 4, durations in integer microseconds."""

    season_id: str
    name: str
    start: datetime
    end: datetime
    pool_per_epoch: int
    token_decimals: int
    heartbeat_period_us: int = _DURATION_DEFAULTS_US["heartbeat_period"]
    liveness_timeout_us: int = _DURATION_DEFAULTS_US["liveness_timeout"]
    restart_grace_us: int = _DURATION_DEFAULTS_US["restart_grace"]
    incident_lookback_us: int = _DURATION_DEFAULTS_US["incident_lookback"]
    epoch_length_us: int = _DURATION_DEFAULTS_US["epoch_length"]
    max_bridges_per_epoch: int = 3
    min_uptime_ratio: Fraction = Fraction(9, 10)
    tier_weights: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({"default": 1})
    )

    @property
    def epoch_count(self) -> int:
        """Number of epochs in the season (the season is a whole number of epochs)."""
        return (self.end - self.start) // timedelta(microseconds=self.epoch_length_us)

    @property
    def min_counted_us(self) -> int:
        """The least counted time, in whole µs, that makes an epoch eligible (DESIGN 4.6):
        `min_uptime_ratio` (the decimal as written, exactly) x L, rounded up to a whole µs.
        0.9 of a day is exactly 77,760 s."""
        ratio = self.min_uptime_ratio
        return -((-ratio.numerator * self.epoch_length_us) // ratio.denominator)

    def canonical(self) -> dict[str, Any]:
        """The policy as plain JSON values, in the spelling of the season file."""
        return {
            "id": self.season_id,
            "name": self.name,
            "start": self.start.isoformat().replace("+00:00", "Z"),
            "end": self.end.isoformat().replace("+00:00", "Z"),
            "pool_per_epoch": self.pool_per_epoch,
            "token_decimals": self.token_decimals,
            "heartbeat_period": format_duration_us(self.heartbeat_period_us),
            "liveness_timeout": format_duration_us(self.liveness_timeout_us),
            "restart_grace": format_duration_us(self.restart_grace_us),
            "incident_lookback": format_duration_us(self.incident_lookback_us),
            "epoch_length": format_duration_us(self.epoch_length_us),
            "max_bridges_per_epoch": self.max_bridges_per_epoch,
            "min_uptime_ratio": f"{self.min_uptime_ratio.numerator}/"
            f"{self.min_uptime_ratio.denominator}",
            "tier_weights": dict(sorted(self.tier_weights.items())),
        }

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as plain values (a mapping proxy cannot be), so that a policy travels
        to the processes that compute shards."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["tier_weights"] = dict(self.tier_weights)
        return (_unpickled_policy, (values,))

    @property
    def policy_hash(self) -> str:
        """SHA-256 of the canonical JSON form: equal for equal policies, whatever the spelling."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _unpickled_policy(values: dict[str, Any]) -> SeasonPolicy:
    tiers = MappingProxyType(dict(values.pop("tier_weights")))
    return SeasonPolicy(**values, tier_weights=tiers)


def _duration(data: Mapping[str, Any], key: str) -> int:
    if key not in data:
        return _DURATION_DEFAULTS_US[key]
    try:
        return parse_duration_us(data[key])
    except ValueError as exc:
        raise PolicyError(f"season key {key!r}: {exc}") from None


def _moment(data: Mapping[str, Any], key: str) -> datetime:
    value = data[key]
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise PolicyError(
                f"season key {key!r}: {value!r} is not an RFC 3339 time like 2024-04-20T00:00:00Z"
            ) from None
    if not isinstance(value, datetime):
        raise PolicyError(f"season key {key!r}: expected a UTC time, got {value!r}")
    offset = value.utcoffset()
    if offset is None:
        raise PolicyError(f"season key {key!r}: {value} has no UTC offset; write it with 'Z'")
    return (value - offset).replace(tzinfo=UTC)


def _integer(data: Mapping[str, Any], key: str, *, minimum: int, default: int | None = None) -> int:
    if key not in data:
        if default is None:
            raise PolicyError(f"season key {key!r} is required")
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"season key {key!r}: expected an integer, got {value!r}")
    if value < minimum:
        raise PolicyError(f"season key {key!r}: must be at least {minimum}, got {value}")
    return value


def _ratio(data: Mapping[str, Any]) -> Fraction:
    if "min_uptime_ratio" not in data:
        return Fraction(9, 10)
    value = data["min_uptime_ratio"]
    # The ratio is the decimal as written: 0.9 means exactly 9/10, never the nearest binary float.
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        if isinstance(value, str) and "/" in value:
            ratio = Fraction(value)
        else:
            ratio = Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError, ZeroDivisionError):
        raise PolicyError(
            f"season key 'min_uptime_ratio': expected a decimal like 0.90, got {value!r}"
        ) from None
    if not 0 <= ratio <= 1:
        raise PolicyError(f"season key 'min_uptime_ratio': must be within [0, 1], got {value!r}")
    return ratio


def _tiers(data: Mapping[str, Any]) -> Mapping[str, int]:
    tiers = data.get("tier_weights", {"default": 1})
    if not isinstance(tiers, Mapping):
        raise PolicyError("season key 'tier_weights': expected a table of GPU model = weight")
    clean: dict[str, int] = {}
    for model, weight in tiers.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise PolicyError(
                f"season key 'tier_weights.{model}': expected a non-negative integer, "
                f"got {weight!r}"
            )
        clean[str(model)] = weight
    if "default" not in clean:
        raise PolicyError("season key 'tier_weights': a 'default' weight is required")
    return MappingProxyType(dict(sorted(clean.items())))


def parse_policy(data: Mapping[str, Any]) -> SeasonPolicy:
    """Validate a season mapping into a SeasonPolicy; PolicyError names the first bad key."""
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise PolicyError(
            f"season key {unknown[0]!r} is not known; known keys are: {', '.join(sorted(_KNOWN))}"
        )
    for key in _REQUIRED:
        if key not in data:
            raise PolicyError(f"season key {key!r} is required")
    for key in ("id", "name"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise PolicyError(f"season key {key!r}: expected a non-empty string")
    start, end = _moment(data, "start"), _moment(data, "end")
    if end <= start:
        raise PolicyError(f"season key 'end': {end} is not after start {start}")
    policy = SeasonPolicy(
        season_id=data["id"],
        name=data["name"],
        start=start,
        end=end,
        pool_per_epoch=_integer(data, "pool_per_epoch", minimum=0),
        token_decimals=_integer(data, "token_decimals", minimum=0),
        heartbeat_period_us=_duration(data, "heartbeat_period"),
        liveness_timeout_us=_duration(data, "liveness_timeout"),
        restart_grace_us=_duration(data, "restart_grace"),
        incident_lookback_us=_duration(data, "incident_lookback"),
        epoch_length_us=_duration(data, "epoch_length"),
        max_bridges_per_epoch=_integer(data, "max_bridges_per_epoch", minimum=0, default=3),
        min_uptime_ratio=_ratio(data),
        tier_weights=_tiers(data),
    )
    check_policy(policy)
    return policy


def check_policy(policy: SeasonPolicy) -> None:
    """Refuse combinations of parameters that DESIGN 4 rules out."""
    if policy.heartbeat_period_us <= 0:
        raise PolicyError("season key 'heartbeat_period': must be positive")
    if policy.liveness_timeout_us < policy.heartbeat_period_us:
        raise PolicyError(
            "season key 'liveness_timeout': must be at least 'heartbeat_period' "
            f"({format_duration_us(policy.liveness_timeout_us)} < "
            f"{format_duration_us(policy.heartbeat_period_us)})"
        )
    if policy.epoch_length_us <= 0:
        raise PolicyError("season key 'epoch_length': must be positive")
    span_us = (policy.end - policy.start) // timedelta(microseconds=1)
    if span_us % policy.epoch_length_us:
        raise PolicyError(
            "season key 'end': the season must be a whole number of epochs "
            f"of {format_duration_us(policy.epoch_length_us)}"
        )
    if policy.pool_per_epoch * policy.epoch_count > 2**63 - 1:
        raise PolicyError(
            "season key 'pool_per_epoch': the season's pools must sum to at most 2^63 - 1 "
            "base units (amounts are stored as 64-bit integers)"
        )
