"""How snapshots and diffs read on a terminal (the CLI and the demo share these)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from rewards.services.records import SnapshotRecord
from rewards.services.snapshots import Diff, label


def print_snapshot(snap: SnapshotRecord, console: Console) -> None:
    """Everything a snapshot records, one field per line."""
    fields = {
        "snapshot": label(snap),
        "status": snap.status,
        "epochs": f"{snap.epoch_first}-{snap.epoch_last}",
        "device-epochs": f"{snap.device_epoch_rows:,} ({snap.eligible_device_epochs:,} eligible)",
        "devices": f"{snap.devices:,}",
        "suppliers": f"{snap.suppliers:,}",
        "paid": f"{snap.total_paid:,} of {snap.total_pool:,} base units",
        "unassigned": f"{snap.total_unassigned:,} (paid to devices with no owner on record)",
        "triggered by": f"{snap.trigger}: {snap.triggered_by}, {snap.reason}",
        "policy hash": snap.policy_hash,
        "input fingerprint": snap.input_fingerprint,
        "code version": snap.code_version,
        "content hash": snap.content_hash,
        "merkle root": snap.merkle_root,
    }
    for key, value in fields.items():
        console.print(f"{key + ':':19}{value}", highlight=False)


def print_diff(d: Diff, console: Console) -> None:
    """The diff summary: counts, base units moved and the largest supplier changes."""
    s = d.summary
    console.print(
        f"{label(d.before)} -> {label(d.after)}: {s.device_epochs_changed:,} device-epochs "
        f"changed on {s.devices_changed:,} devices; {s.device_epochs_regained:,} device-epochs "
        f"({s.devices_regained:,} devices) regained eligibility, {s.device_epochs_lost:,} lost "
        f"it; {s.suppliers_changed:,} suppliers changed ({s.suppliers_gaining:,} gain, "
        f"{s.suppliers_losing:,} lose); {s.moved:,} base units moved",
        highlight=False,
    )
    if s.largest:
        table = Table("supplier", "before", "after", "delta", title="largest changes")
        for owner, before, after, delta in s.largest:
            table.add_row(owner, f"{before:,}", f"{after:,}", f"{delta:+,}")
        console.print(table)
