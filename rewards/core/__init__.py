"""The pure computational core: polars frames and plain values in and out, no I/O.

Everything outside the core imports from this package, never from its modules: this
list is the core's public surface (a test keeps it complete, sorted and used).
"""

from rewards.core.allocation import allocate
from rewards.core.canonical_export import (
    canonical_csv,
    canonical_csv_parts,
    content_hash,
    export_rows,
    reward_decimal,
)
from rewards.core.csv_cells import CSV_INJECTION, csv_bytes
from rewards.core.diffs import DiffSummary, adjustments, diff_rows, diff_suppliers, summarize
from rewards.core.durations import format_duration_us, parse_duration_us
from rewards.core.eligibility_view import (
    PACKED_DOCUMENTS,
    owner_documents,
    pack_documents,
    started_epochs,
    view_rows,
)
from rewards.core.epochs import closed_epochs, parse_epoch_range
from rewards.core.fingerprint import (
    FINGERPRINT_PARTS,
    combine_fingerprint,
    fingerprint,
    fingerprint_parts,
)
from rewards.core.frames import (
    DEVICES,
    HEARTBEATS,
    INCIDENT_VERSIONS,
    INCIDENTS,
    INTERVALS,
    RESULT_FILE_COLUMNS,
    RESULTS,
    TIME,
    FrameSchemaError,
    check_frame,
    empty,
    from_us,
    slices,
    to_us,
)
from rewards.core.identifiers import IDENTIFIER_PATTERN, identifier_problem, not_identifiers
from rewards.core.incidents import IncidentScopeError, incident_versions, incident_versions_near
from rewards.core.intervals import (
    conflicting_heartbeats,
    merge_intervals,
    online_intervals,
    unique_heartbeats,
)
from rewards.core.limits import IngestLimits, RetryPolicy
from rewards.core.merkle import (
    Payout,
    ProofStep,
    check_proof_document,
    leaf_hash,
    merkle_proof,
    merkle_root,
    payout_leaves,
    proof_document,
    verify_proof,
)
from rewards.core.outages import (
    DetectorSettings,
    Outage,
    counts_from_tallies,
    fleet_drops,
    unreachable_periods,
)
from rewards.core.pipeline import REASONS, device_epochs, epoch_payouts, unpaid_device_epochs
from rewards.core.policy import PolicyError, SeasonPolicy, check_policy, parse_policy
from rewards.core.row_summary import RowsSummary, summarize_rows
from rewards.core.scope import IncidentScope, ScopeError
from rewards.core.shard_allocation import (
    add_histograms,
    add_totals,
    boundary_buckets,
    boundary_rows,
    cutoffs,
    remainder_histogram,
    shard_rewards,
    shard_totals,
    shares,
)
from rewards.core.shards import FINE_BUCKETS, device_shards
from rewards.core.snapshot_rows import (
    EPOCH_TOTALS,
    OWNERS,
    SNAPSHOT_ROWS,
    SUPPLIERS,
    epoch_totals,
    snapshot_rows,
    supplier_totals,
)
from rewards.core.surges import SurgePolicy, surge_threshold, surge_windows
from rewards.core.timeline import (
    KINDS,
    Gap,
    device_gaps,
    epoch_bounds,
    gap_words,
    grid_state,
    timeline_segments,
)
from rewards.core.times import (
    DEFAULT_YEARS,
    YearWindow,
    parse_rfc3339,
    parse_rfc3339_series,
    rfc3339_problem,
)
from rewards.core.versions import VersionError, version_key

__all__ = [
    "CSV_INJECTION",
    "DEFAULT_YEARS",
    "DEVICES",
    "EPOCH_TOTALS",
    "FINE_BUCKETS",
    "FINGERPRINT_PARTS",
    "HEARTBEATS",
    "IDENTIFIER_PATTERN",
    "INCIDENTS",
    "INCIDENT_VERSIONS",
    "INTERVALS",
    "KINDS",
    "OWNERS",
    "PACKED_DOCUMENTS",
    "REASONS",
    "RESULTS",
    "RESULT_FILE_COLUMNS",
    "SNAPSHOT_ROWS",
    "SUPPLIERS",
    "TIME",
    "DetectorSettings",
    "DiffSummary",
    "FrameSchemaError",
    "Gap",
    "IncidentScope",
    "IncidentScopeError",
    "IngestLimits",
    "Outage",
    "Payout",
    "PolicyError",
    "ProofStep",
    "RetryPolicy",
    "RowsSummary",
    "ScopeError",
    "SeasonPolicy",
    "SurgePolicy",
    "VersionError",
    "YearWindow",
    "add_histograms",
    "add_totals",
    "adjustments",
    "allocate",
    "boundary_buckets",
    "boundary_rows",
    "canonical_csv",
    "canonical_csv_parts",
    "check_frame",
    "check_policy",
    "check_proof_document",
    "closed_epochs",
    "combine_fingerprint",
    "conflicting_heartbeats",
    "content_hash",
    "counts_from_tallies",
    "csv_bytes",
    "cutoffs",
    "device_epochs",
    "device_gaps",
    "device_shards",
    "diff_rows",
    "diff_suppliers",
    "empty",
    "epoch_bounds",
    "epoch_payouts",
    "epoch_totals",
    "export_rows",
    "fingerprint",
    "fingerprint_parts",
    "fleet_drops",
    "format_duration_us",
    "from_us",
    "gap_words",
    "grid_state",
    "identifier_problem",
    "incident_versions",
    "incident_versions_near",
    "leaf_hash",
    "merge_intervals",
    "merkle_proof",
    "merkle_root",
    "not_identifiers",
    "online_intervals",
    "owner_documents",
    "pack_documents",
    "parse_duration_us",
    "parse_epoch_range",
    "parse_policy",
    "parse_rfc3339",
    "parse_rfc3339_series",
    "payout_leaves",
    "proof_document",
    "remainder_histogram",
    "reward_decimal",
    "rfc3339_problem",
    "shard_rewards",
    "shard_totals",
    "shares",
    "slices",
    "snapshot_rows",
    "started_epochs",
    "summarize",
    "summarize_rows",
    "supplier_totals",
    "surge_threshold",
    "surge_windows",
    "timeline_segments",
    "to_us",
    "unique_heartbeats",
    "unpaid_device_epochs",
    "unreachable_periods",
    "verify_proof",
    "version_key",
    "view_rows",
]
