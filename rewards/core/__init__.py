"""The pure computational core: polars frames and plain values in and out, no I/O."""

from rewards.core.durations import format_duration_us, parse_duration_us
from rewards.core.frames import HEARTBEATS, INTERVALS, FrameSchemaError, check_frame, empty
from rewards.core.intervals import merge_intervals, online_intervals, unique_heartbeats
from rewards.core.policy import PolicyError, SeasonPolicy, check_policy, parse_policy

__all__ = [
    "HEARTBEATS",
    "INTERVALS",
    "FrameSchemaError",
    "PolicyError",
    "SeasonPolicy",
    "check_frame",
    "check_policy",
    "empty",
    "format_duration_us",
    "merge_intervals",
    "online_intervals",
    "parse_duration_us",
    "parse_policy",
    "unique_heartbeats",
]
