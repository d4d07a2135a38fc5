"""Merkle tree over a snapshot's payouts (DESIGN 5), simple enough to verify by hand.

Leaves are (owner_id, season, version, amount), one per supplier, sorted by owner_id in
byte order. A leaf hashes as SHA-256(0x00 || JSON [owner_id, season, version, amount]) with
no spaces and non-ASCII kept as UTF-8; an inner node as SHA-256(0x01 || left || right). The
prefixes keep a leaf from ever passing for a node. Each level pairs nodes left to right; an
odd last node moves up unchanged. The root of no leaves is SHA-256 of nothing.

A proof is the list of sibling hashes from the leaf up, each marked "left" or "right" of
the path; verifying is hashing up with them and comparing with the root (see README).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import polars as pl


@dataclass(frozen=True)
class Payout:
    """One leaf: what a supplier is paid in a snapshot, in integer base units."""

    owner_id: str
    season: str
    version: int
    amount: int


def payout_leaves(suppliers: pl.DataFrame, season: str, version: int) -> list[Payout]:
    """The Merkle leaves of a snapshot: one per supplier."""
    return [
        Payout(owner_id=owner, season=season, version=version, amount=amount)
        for owner, amount in suppliers.select("owner_id", "reward").iter_rows()
    ]


@dataclass(frozen=True)
class ProofStep:
    side: str  # where the sibling sits: "left" or "right"
    sibling: str  # hex SHA-256


def leaf_hash(payout: Payout) -> bytes:
    """The leaf's hash: SHA-256(0x00 || canonical JSON of its four fields)."""
    body = json.dumps(
        [payout.owner_id, payout.season, payout.version, payout.amount],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(b"\x00" + body.encode("utf-8")).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _ordered(payouts: list[Payout]) -> list[Payout]:
    ordered = sorted(payouts, key=lambda p: p.owner_id.encode("utf-8"))
    for a, b in pairwise(ordered):
        if a.owner_id == b.owner_id:
            raise ValueError(f"owner {a.owner_id!r} has more than one payout leaf")
    return ordered


def _levels(payouts: list[Payout]) -> list[list[bytes]]:
    level = [leaf_hash(p) for p in _ordered(payouts)]
    levels = [level]
    while len(level) > 1:
        level = [
            _node(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        levels.append(level)
    return levels


def merkle_root(payouts: list[Payout]) -> str:
    """Hex root over `payouts` (any order; sorted here)."""
    if not payouts:
        return hashlib.sha256(b"").hexdigest()
    return _levels(payouts)[-1][0].hex()


def merkle_proof(payouts: list[Payout], owner_id: str) -> list[ProofStep]:
    """The proof that `owner_id`'s leaf is in the tree over `payouts`."""
    levels = _levels(payouts)
    owners = [p.owner_id for p in _ordered(payouts)]
    if owner_id not in owners:
        raise KeyError(f"no payout leaf for owner {owner_id!r}")
    index = owners.index(owner_id)
    steps: list[ProofStep] = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            side = "left" if sibling < index else "right"
            steps.append(ProofStep(side, level[sibling].hex()))
        index //= 2
    return steps


def verify_proof(payout: Payout, proof: list[ProofStep], root: str) -> bool:
    """Whether `proof` leads from `payout`'s leaf to `root`."""
    current = leaf_hash(payout)
    for step in proof:
        sibling = bytes.fromhex(step.sibling)
        if step.side == "left":
            current = _node(sibling, current)
        elif step.side == "right":
            current = _node(current, sibling)
        else:
            return False
    return current.hex() == root


def proof_document(payouts: list[Payout], owner_id: str) -> dict[str, Any]:
    """A self-contained proof: the leaf, the path and the root (the README's format)."""
    leaf = next((p for p in payouts if p.owner_id == owner_id), None)
    if leaf is None:
        raise KeyError(f"no payout leaf for owner {owner_id!r}")
    return {
        "leaf": [leaf.owner_id, leaf.season, leaf.version, leaf.amount],
        "proof": [{"side": s.side, "sibling": s.sibling} for s in merkle_proof(payouts, owner_id)],
        "root": merkle_root(payouts),
    }


def check_proof_document(document: Mapping[str, Any], root: str | None = None) -> bool:
    """Whether a proof document leads from its leaf to its root (or to `root` when given).

    Anything malformed is simply not a valid proof.
    """
    try:
        owner_id, season, version, amount = document["leaf"]
        if not (isinstance(owner_id, str) and isinstance(season, str)):
            return False
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (version, amount)):
            return False
        steps = [ProofStep(str(s["side"]), str(s["sibling"])) for s in document["proof"]]
        expected = root if root is not None else str(document["root"])
        return verify_proof(Payout(owner_id, season, version, amount), steps, expected)
    except (KeyError, TypeError, ValueError):
        return False
