"""The pure computational core: polars frames and plain values in and out, no I/O."""

from rewards.core.allocation import allocate
from rewards.core.durations import format_duration_us, parse_duration_us
from rewards.core.frames import (
    DEVICES,
    HEARTBEATS,
    INCIDENT_VERSIONS,
    INCIDENTS,
    INTERVALS,
    RESULTS,
    FrameSchemaError,
    check_frame,
    empty,
)
from rewards.core.incidents import IncidentScopeError, incident_versions
from rewards.core.intervals import merge_intervals, online_intervals, unique_heartbeats
from rewards.core.merkle import Payout, ProofStep, merkle_proof, merkle_root, verify_proof
from rewards.core.pipeline import REASONS, device_epochs, epoch_payouts
from rewards.core.policy import PolicyError, SeasonPolicy, check_policy, parse_policy
from rewards.core.scope import IncidentScope, ScopeError
from rewards.core.versions import VersionError, version_key

__all__ = [
    "DEVICES",
    "HEARTBEATS",
    "INCIDENTS",
    "INCIDENT_VERSIONS",
    "INTERVALS",
    "REASONS",
    "RESULTS",
    "FrameSchemaError",
    "IncidentScope",
    "IncidentScopeError",
    "Payout",
    "PolicyError",
    "ProofStep",
    "ScopeError",
    "SeasonPolicy",
    "VersionError",
    "allocate",
    "check_frame",
    "check_policy",
    "device_epochs",
    "empty",
    "epoch_payouts",
    "format_duration_us",
    "incident_versions",
    "merge_intervals",
    "merkle_proof",
    "merkle_root",
    "online_intervals",
    "parse_duration_us",
    "parse_policy",
    "unique_heartbeats",
    "verify_proof",
    "version_key",
]
