#!/usr/bin/env python3
"""Check an Ignition rewards payout without the engine: standard library only, one file.

    python3 verify_payout.py proof PROOF.json --root HEX   one supplier's proof
    python3 verify_payout.py root CLAIMS_FILE               the root of a public claims file
    python3 verify_payout.py bundle DIR                     a public bundle: hashes and root

Rules (the engine's README, "Verifying a payout proof"): a leaf is [holder, season,
version, amount] and hashes as SHA-256(0x00 || the leaf as JSON without spaces, UTF-8); a
node as SHA-256(0x01 || left || right); leaves sorted by holder (byte order); each level
pairs nodes left to right and an odd last node moves up unchanged. In proof format 2
("format": "ignition-rewards-proof/2") the holder is the commitment SHA-256(salt ||
owner_id) and the proof carries the owner_id and the salt (hex). A claims file has one JSON
object per line, {"leaf": [...], "proof": [...]}, in leaf order.

Exit status: 0 only when everything checks; 1 when something does not (said on stderr);
2 for a file that cannot be read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

PROOF_FORMAT = "ignition-rewards-proof/2"
BUNDLE_FORMAT = "ignition-rewards-public/1"
CLAIMS = "claims.ndjson"


def leaf_hash(leaf: list) -> bytes:
    body = json.dumps(leaf, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(b"\x00" + body).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def path_root(leaf: list, proof: list) -> str:
    """The root a proof leads to from its leaf."""
    current = leaf_hash(leaf)
    for step in proof:
        sibling = bytes.fromhex(step["sibling"])
        if step["side"] == "left":
            current = node(sibling, current)
        elif step["side"] == "right":
            current = node(current, sibling)
        else:
            raise ValueError(f"a proof step's side is {step['side']!r}")
    return current.hex()


def tree_root(leaves: list) -> str:
    """The root over `leaves` (sorted here by holder, byte order)."""
    level = [leaf_hash(leaf) for leaf in sorted(leaves, key=lambda x: x[0].encode("utf-8"))]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        level = [
            node(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0].hex()


def check_leaf(leaf: object) -> list:
    if not (isinstance(leaf, list) and len(leaf) == 4):
        raise ValueError("a leaf is [holder, season, version, amount]")
    holder, season, version, amount = leaf
    if not (isinstance(holder, str) and isinstance(season, str)):
        raise ValueError("a leaf's holder and season are text")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (version, amount)):
        raise ValueError("a leaf's version and amount are integers")
    return leaf


def commitment_problem(document: dict) -> str | None:
    """Why a format-2 proof's leaf is not its owner's commitment (None: it is)."""
    if document.get("format") != PROOF_FORMAT:
        return f"unknown proof format {document.get('format')!r}"
    salt = bytes.fromhex(str(document.get("salt", "")))
    owner = document.get("owner_id")
    if len(salt) != 32 or not isinstance(owner, str):
        return "a format-2 proof carries the owner_id and a 32-byte salt"
    made = hashlib.sha256(salt + owner.encode("utf-8")).hexdigest()
    if made != document["leaf"][0]:
        return f"the leaf is not the commitment of {owner!r} with this salt"
    return None


def proof_command(path: Path, root: str) -> list[str]:
    document = json.loads(path.read_text(encoding="utf-8"))
    leaf = check_leaf(document.get("leaf"))
    problems = []
    if "format" in document:
        problem = commitment_problem(document)
        if problem:
            problems.append(problem)
    if path_root(leaf, document.get("proof", [])) != root.lower():
        problems.append(f"the proof does not lead from the leaf to the root {root}")
    if not problems:
        whose = f" ({document['owner_id']}'s commitment)" if "format" in document else ""
        print(f"valid: {leaf}{whose} is in the tree with root {root.lower()}")
    return problems


def read_claims(path: Path) -> list[dict]:
    claims = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            claim = json.loads(line)
            try:
                check_leaf(claim.get("leaf"))
            except ValueError as exc:
                raise ValueError(f"{path.name} line {number}: {exc}") from None
            claims.append(claim)
    return claims


def claims_problems(claims: list[dict], root: str) -> list[str]:
    """Each claim's proof must lead to `root`, and no holder may appear twice."""
    problems = []
    holders = [c["leaf"][0] for c in claims]
    if len(set(holders)) != len(holders):
        problems.append("a holder has more than one leaf")
    for number, claim in enumerate(claims, start=1):
        if path_root(claim["leaf"], claim.get("proof", [])) != root:
            problems.append(f"claim {number}: its proof does not lead to the root")
            break
    return problems


def root_command(path: Path) -> list[str]:
    claims = read_claims(path)
    root = tree_root([c["leaf"] for c in claims])
    print(f"root {root} over {len(claims)} leaves")
    return claims_problems(claims, root)


def bundle_command(directory: Path) -> list[str]:
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    problems = []
    if manifest.get("format") != BUNDLE_FORMAT:
        problems.append(f"manifest: unknown bundle format {manifest.get('format')!r}")
    for name, expected in sorted(manifest.get("files", {}).items()):
        target = directory / name
        if Path(name).name != name or not target.is_file():
            problems.append(f"{name}: missing")
            continue
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != expected.get("sha256"):
            problems.append(f"{name}: SHA-256 differs from the manifest")
    if CLAIMS not in manifest.get("files", {}):
        problems.append(f"manifest lists no {CLAIMS}")
        return problems
    claims = read_claims(directory / CLAIMS)
    root = tree_root([c["leaf"] for c in claims])
    if root != manifest.get("merkle_root"):
        problems.append(
            f"{CLAIMS}: its leaves give root {root}, the manifest says "
            f"{manifest.get('merkle_root')}"
        )
    problems += claims_problems(claims, root)
    paid = sum(c["leaf"][3] for c in claims)
    if paid != manifest.get("paid_to_suppliers"):
        problems.append(
            f"{CLAIMS}: amounts add up to {paid}, the manifest says "
            f"{manifest.get('paid_to_suppliers')}"
        )
    if not problems:
        print(
            f"valid: {manifest.get('snapshot')} root {root}, {len(claims)} claims, "
            f"{paid} base units, every file as the manifest says"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("proof", help="check one proof document")
    one.add_argument("proof_file", type=Path)
    one.add_argument("--root", required=True, help="the published Merkle root (hex)")
    claims = commands.add_parser("root", help="recompute the root of a claims file")
    claims.add_argument("claims_file", type=Path)
    bundle = commands.add_parser("bundle", help="check a public bundle's manifest and root")
    bundle.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "proof":
            problems = proof_command(args.proof_file, args.root)
        elif args.command == "root":
            problems = root_command(args.claims_file)
        else:
            problems = bundle_command(args.directory)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"cannot check: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
