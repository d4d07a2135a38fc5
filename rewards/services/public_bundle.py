"""The public bundle of a published snapshot (DESIGN 9, issue 18): what anyone may
download, so that proofs outlive the service and nothing in it names an owner or links a
device to one.

    manifest.json   the snapshot's name, root, content hash, code version, policy hash,
                    leaf format, what it paid suppliers, the audit log's head when it was
                    published, and each file's SHA-256 and size
    claims.ndjson   every leaf with its proof, one JSON object a line, in leaf order:
                    {"leaf": [commitment, season, version, amount], "proof": [...]}
    epochs.json     the per-epoch totals: pool, paid, unassigned, eligible devices
    policy.json     the season policy it was computed with

Only snapshots whose leaves name commitments (leaf format 2) have one: an older one's
leaves name owners. `tools/verify_payout.py bundle DIR` checks a bundle with the standard
library alone.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from rewards.core import LEAF_FORMAT, all_proofs, merkle_root, payout_leaves
from rewards.services.exports import fresh_directory
from rewards.services.files import json_bytes
from rewards.services.records import SnapshotRecord
from rewards.services.snapshots import (
    SnapshotConflict,
    current,
    label,
    policy_of,
    stored_epochs,
    stored_suppliers,
)

BUNDLE_FORMAT = "ignition-rewards-public/1"
MANIFEST, CLAIMS = "manifest.json", "claims.ndjson"
PUBLIC_FILES = {
    MANIFEST: "application/json",
    CLAIMS: "application/x-ndjson",
    "epochs.json": "application/json",
    "policy.json": "application/json",
}
KEPT = 2  # bundles per process: a bundle's files are asked for one after another
_kept: OrderedDict[tuple[int, str], dict[str, bytes]] = OrderedDict()
_lock = threading.Lock()


def public_files(engine: Engine, snapshot: SnapshotRecord) -> dict[str, bytes]:
    """The bundle's files by name (SnapshotConflict for a draft or a snapshot made before
    pseudonymous leaves). The same bytes whenever asked: nothing in them changes once the
    snapshot is published (its later status is not part of them)."""
    snapshot = current(engine, snapshot)
    if snapshot.status == "draft":
        raise SnapshotConflict(f"{label(snapshot)} is a draft: only published versions are public")
    if snapshot.leaf_format < LEAF_FORMAT:
        raise SnapshotConflict(
            f"{label(snapshot)} was made before pseudonymous leaves: its leaves name owners, "
            "so it has no public claims file (a rerun makes one)"
        )
    key = (snapshot.id, snapshot.merkle_root)
    with _lock:
        if key in _kept:
            return _kept[key]
    made = _made(engine, snapshot)
    with _lock:
        _kept[key] = made
        while len(_kept) > KEPT:
            _kept.popitem(last=False)
    return made


def _made(engine: Engine, snapshot: SnapshotRecord) -> dict[str, bytes]:
    suppliers = stored_suppliers(engine, snapshot)
    leaves = payout_leaves(suppliers, snapshot.season, snapshot.version)
    if merkle_root(leaves) != snapshot.merkle_root:
        raise SnapshotConflict(f"{label(snapshot)}: the stored payouts do not match its root")
    claims = b"".join(
        json.dumps(
            {"leaf": [p.holder, p.season, p.version, p.amount],
             "proof": [{"side": s.side, "sibling": s.sibling} for s in steps]},
            separators=(",", ":"),
        ).encode() + b"\n"
        for p, steps in all_proofs(leaves)
    )  # fmt: skip
    files = {
        CLAIMS: claims,
        "epochs.json": json_bytes(stored_epochs(engine, snapshot).to_dicts()),
        "policy.json": json_bytes(policy_of(snapshot)),
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "snapshot": label(snapshot),
        "season": snapshot.season,
        "version": snapshot.version,
        "epochs": [snapshot.epoch_first, snapshot.epoch_last],
        "merkle_root": snapshot.merkle_root,
        "leaf_format": snapshot.leaf_format,
        "content_hash": snapshot.content_hash,
        "code_version": snapshot.code_version,
        "policy_hash": snapshot.policy_hash,
        "paid_to_suppliers": sum(p.amount for p in leaves),
        "audit_head_at_publication": {
            "entries": snapshot.published_audit_entries,
            "hash": snapshot.published_audit_hash,
        },
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            for name, data in sorted(files.items())
        },
    }
    return {**files, MANIFEST: json_bytes(manifest)}


def write_public_files(engine: Engine, snapshot: SnapshotRecord, out: Path) -> dict[str, Any]:
    """The bundle written into the new directory `out` (renamed into place when whole);
    returns its manifest."""
    files = public_files(engine, snapshot)
    with fresh_directory(out) as directory:
        for name, data in files.items():
            (directory / name).write_bytes(data)
    manifest: dict[str, Any] = json.loads(files[MANIFEST])
    return manifest
