"""Durations written as people write them ("90s", "15m", "48h", "1h30m") or as seconds."""

from __future__ import annotations

import re

_UNIT_US = {
    "us": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
}
_PART = re.compile(r"(\d+)(us|ms|s|m|h|d)")
_WHOLE = re.compile(r"^(?:\d+(?:us|ms|s|m|h|d))+$")


def parse_duration_us(value: object) -> int:
    """Microseconds in `value`: a non-negative integer of seconds or a string like "1h30m".

    Raises ValueError with a readable reason for anything else (negative, float, bool,
    unknown unit).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '90s' or a number of seconds, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return value * 1_000_000
    if isinstance(value, str):
        text = value.strip()
        if _WHOLE.match(text):
            return sum(int(n) * _UNIT_US[unit] for n, unit in _PART.findall(text))
        if text.lstrip("-").isdigit():
            return parse_duration_us(int(text))
    raise ValueError(
        f"expected a duration like '90s', '15m', '48h' or whole seconds, got {value!r}"
    )


def format_duration_us(us: int) -> str:
    """The shortest exact spelling of `us` microseconds ("15m", "1h30m", "1500ms")."""
    if us == 0:
        return "0s"
    parts = []
    rest = us
    for unit in ("d", "h", "m", "s", "ms", "us"):
        n, rest = divmod(rest, _UNIT_US[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)
