"""Merkle tree over a snapshot's payouts (DESIGN 5, 9), simple enough to verify by hand.

Leaves are (holder, season, version, amount), one per supplier, sorted by holder in byte
order. The holder is the supplier's commitment (leaf format 2, DESIGN 9): the hex of
SHA-256(salt || owner_id), where the salt is the owner's secret for the season, derived
from the engine's publication key (`owner_salt`) and handed only to them in their proof;
snapshots made before format 2 name the owner_id itself (format 1). A leaf hashes as
SHA-256(0x00 || JSON [holder, season, version, amount]) with no spaces and non-ASCII kept as
UTF-8; an inner node as SHA-256(0x01 || left || right). The prefixes keep a leaf from ever
passing for a node. Each level pairs nodes left to right; an odd last node moves up
unchanged. The root of no leaves is SHA-256 of nothing.

A proof is the list of sibling hashes from the leaf up, each marked "left" or "right" of
the path; verifying is hashing up with them and comparing with the root, and in format 2
also recomputing the commitment from the owner_id and salt the proof carries (see README).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import polars as pl

LEAF_FORMAT = 2  # leaves name commitments; 1: owner ids in clear (snapshots before it)
PROOF_FORMAT = "ignition-rewards-proof/2"  # a proof document without "format" is format 1
_SALT_LABEL = b"ignition-rewards commitment salt\x00"


@dataclass(frozen=True)
class Payout:
    """One leaf: what a supplier is paid in a snapshot, in integer base units; `holder` is
    their commitment (format 2) or their owner_id (format 1)."""

    holder: str
    season: str
    version: int
    amount: int


def owner_salt(key: bytes, season: str, owner_id: str) -> bytes:
    """The owner's secret salt for the season: HMAC-SHA-256 of the publication key over a
    label, the season and the owner_id (each NUL-separated), stable for the season."""
    message = _SALT_LABEL + season.encode("utf-8") + b"\x00" + owner_id.encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()


def commitment(salt: bytes, owner_id: str) -> str:
    """The hex SHA-256 of salt || owner_id (UTF-8): what a format-2 leaf names."""
    return hashlib.sha256(salt + owner_id.encode("utf-8")).hexdigest()


def with_commitments(suppliers: pl.DataFrame, key: bytes, season: str) -> pl.DataFrame:
    """`suppliers` with each owner's `commitment` for the season under `key`."""
    owners = suppliers.get_column("owner_id").to_list()
    made = [commitment(owner_salt(key, season, o), o) for o in owners]
    return suppliers.with_columns(commitment=pl.Series(made, dtype=pl.String))


def payout_leaves(suppliers: pl.DataFrame, season: str, version: int) -> list[Payout]:
    """The Merkle leaves of a snapshot: one per supplier, named by its `commitment` when the
    frame has one (format 2), else by its owner_id (format 1)."""
    holder = "commitment" if "commitment" in suppliers.columns else "owner_id"
    return [
        Payout(holder=name, season=season, version=version, amount=amount)
        for name, amount in suppliers.select(holder, "reward").iter_rows()
    ]


@dataclass(frozen=True)
class ProofStep:
    side: str  # where the sibling sits: "left" or "right"
    sibling: str  # hex SHA-256


def leaf_hash(payout: Payout) -> bytes:
    """The leaf's hash: SHA-256(0x00 || canonical JSON of its four fields)."""
    body = json.dumps(
        [payout.holder, payout.season, payout.version, payout.amount],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(b"\x00" + body.encode("utf-8")).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _ordered(payouts: list[Payout]) -> list[Payout]:
    ordered = sorted(payouts, key=lambda p: p.holder.encode("utf-8"))
    for a, b in pairwise(ordered):
        if a.holder == b.holder:
            raise ValueError(f"holder {a.holder!r} has more than one payout leaf")
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


def merkle_proof(payouts: list[Payout], holder: str) -> list[ProofStep]:
    """The proof that `holder`'s leaf is in the tree over `payouts`."""
    levels = _levels(payouts)
    holders = [p.holder for p in _ordered(payouts)]
    if holder not in holders:
        raise KeyError(f"no payout leaf for {holder!r}")
    return _path(levels, holders.index(holder))


def _path(levels: list[list[bytes]], index: int) -> list[ProofStep]:
    """The sibling hashes from leaf `index` up."""
    steps: list[ProofStep] = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            side = "left" if sibling < index else "right"
            steps.append(ProofStep(side, level[sibling].hex()))
        index //= 2
    return steps


def all_proofs(payouts: list[Payout]) -> list[tuple[Payout, list[ProofStep]]]:
    """Every leaf with its proof, in leaf order, from one build of the tree (a claims
    file: `merkle_proof` per leaf would rebuild it each time)."""
    levels, ordered = _levels(payouts) if payouts else [[]], _ordered(payouts)
    made = []
    for position, payout in enumerate(ordered):
        index, steps = position, []
        for level in levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                steps.append(
                    ProofStep("left" if sibling < index else "right", level[sibling].hex())
                )
            index //= 2
        made.append((payout, steps))
    return made


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


def proof_document(
    payouts: list[Payout], holder: str, *, owner_id: str | None = None, salt: bytes | None = None
) -> dict[str, Any]:
    """A self-contained proof: the leaf, the path and the root (the README's format); with
    the `owner_id` and `salt` behind a format-2 holder, also those, so that the owner can
    show the leaf is theirs."""
    leaf = next((p for p in payouts if p.holder == holder), None)
    if leaf is None:
        raise KeyError(f"no payout leaf for {holder!r}")
    document: dict[str, Any] = {}
    if salt is not None and owner_id is not None:
        document = {"format": PROOF_FORMAT, "owner_id": owner_id, "salt": salt.hex()}
    return {
        **document,
        "leaf": [leaf.holder, leaf.season, leaf.version, leaf.amount],
        "proof": [{"side": s.side, "sibling": s.sibling} for s in merkle_proof(payouts, holder)],
        "root": merkle_root(payouts),
    }


def check_proof_document(document: Mapping[str, Any], root: str | None = None) -> bool:
    """Whether a proof document leads from its leaf to its root (or to `root` when given),
    and, in format 2, whether its leaf names the commitment of its owner_id and salt.

    Anything malformed is simply not a valid proof.
    """
    try:
        holder, season, version, amount = document["leaf"]
        if not (isinstance(holder, str) and isinstance(season, str)):
            return False
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (version, amount)):
            return False
        if "format" in document:
            if document["format"] != PROOF_FORMAT or not isinstance(document["owner_id"], str):
                return False
            salt = bytes.fromhex(str(document["salt"]))
            if len(salt) != 32 or commitment(salt, document["owner_id"]) != holder:
                return False
        steps = [ProofStep(str(s["side"]), str(s["sibling"])) for s in document["proof"]]
        expected = root if root is not None else str(document["root"])
        return verify_proof(Payout(holder, season, version, amount), steps, expected)
    except (KeyError, TypeError, ValueError):
        return False
