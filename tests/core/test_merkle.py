"""The payout Merkle tree: every proof verifies, any tampering fails, and the README's
stand-alone verifier agrees with the core."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core.merkle import (
    PROOF_FORMAT,
    Payout,
    ProofStep,
    check_proof_document,
    merkle_proof,
    merkle_root,
    owner_salt,
    payout_leaves,
    proof_document,
    verify_proof,
    with_commitments,
)
from rewards.settings import REPO_ROOT

payouts_strategy = st.lists(
    st.builds(
        Payout,
        holder=st.text(min_size=1, max_size=6),
        season=st.just("ignition-s2"),
        version=st.integers(1, 9),
        amount=st.integers(0, 10**30),
    ),
    max_size=20,
    unique_by=lambda p: p.holder,
)


def readme_code() -> dict[str, Any]:
    """The README's stand-alone proof checks (`verify`, `commitment_ok`), as defined there."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- proof-verifier -->\n```python\n(.*?)```", text, re.S)
    assert code, "the README must keep its proof verifier"
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)  # noqa: S102 - our own README, checked on purpose
    return namespace


def readme_verifier():  # type: ignore[no-untyped-def]
    return readme_code()["verify"]


@settings(max_examples=100, deadline=None)
@given(payouts=payouts_strategy)
def test_every_supplier_proof_verifies_in_the_core_and_with_the_readme_snippet(payouts) -> None:  # type: ignore[no-untyped-def]
    root = merkle_root(payouts)
    assert root == merkle_root(list(reversed(payouts)))  # leaf order does not matter
    verify = readme_verifier()
    for payout in payouts:
        proof = merkle_proof(payouts, payout.holder)
        assert verify_proof(payout, proof, root)
        leaf = [payout.holder, payout.season, payout.version, payout.amount]
        assert verify(leaf, [{"side": s.side, "sibling": s.sibling} for s in proof], root)


def test_tampered_amounts_proofs_and_roots_fail() -> None:
    payouts = [Payout(f"owner-{i}", "ignition-s2", 2, 1_000 * i) for i in range(5)]
    root = merkle_root(payouts)
    target = payouts[3]
    proof = merkle_proof(payouts, target.holder)
    assert verify_proof(target, proof, root)
    richer = Payout(target.holder, target.season, target.version, target.amount + 1)
    assert not verify_proof(richer, proof, root)
    other_version = Payout(target.holder, target.season, 3, target.amount)
    assert not verify_proof(other_version, proof, root)
    flipped = [ProofStep("right" if s.side == "left" else "left", s.sibling) for s in proof]
    assert not verify_proof(target, flipped, root)
    forged = [ProofStep(proof[0].side, "00" * 32), *proof[1:]]
    assert not verify_proof(target, forged, root)
    assert not verify_proof(target, proof[:-1], root)
    assert not verify_proof(target, proof, merkle_root(payouts[:4]))


def test_three_leaves_by_hand() -> None:
    def h(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    leaves = [h(b"\x00" + f'["{o}","s",1,{a}]'.encode()) for o, a in (("a", 5), ("b", 7), ("c", 9))]
    expected = h(b"\x01" + h(b"\x01" + leaves[0] + leaves[1]) + leaves[2])  # c moves up alone
    payouts = [Payout("c", "s", 1, 9), Payout("a", "s", 1, 5), Payout("b", "s", 1, 7)]
    assert merkle_root(payouts) == expected.hex()
    assert merkle_proof(payouts, "c") == [
        ProofStep("left", h(b"\x01" + leaves[0] + leaves[1]).hex())
    ]
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()


def test_one_leaf_per_supplier() -> None:
    with pytest.raises(ValueError, match="more than one payout leaf"):
        merkle_root([Payout("a", "s", 1, 1), Payout("a", "s", 1, 2)])
    with pytest.raises(KeyError):
        merkle_proof([Payout("a", "s", 1, 1)], "b")


KEY = bytes(range(32))


def _by_hand_commitment(salt: bytes, owner_id: str) -> str:
    return hashlib.sha256(salt + owner_id.encode()).hexdigest()


def test_a_salt_is_secret_per_owner_and_season_and_a_leaf_names_a_commitment() -> None:
    """DESIGN 9: the salt is HMAC-SHA-256(key, label || season || owner_id), stable for the
    season; the leaf names SHA-256(salt || owner_id), never the owner_id."""
    label = b"ignition-rewards commitment salt\x00"
    expected = hmac.new(KEY, label + b"ignition-s2\x00owner-7", hashlib.sha256).digest()
    assert owner_salt(KEY, "ignition-s2", "owner-7") == expected
    assert owner_salt(KEY, "ignition-s3", "owner-7") != expected  # per season
    assert owner_salt(bytes(32), "ignition-s2", "owner-7") != expected  # per key
    suppliers = pl.DataFrame({"owner_id": ["owner-7", "owner-8"], "reward": [5, 0]})
    leaves = payout_leaves(with_commitments(suppliers, KEY, "ignition-s2"), "ignition-s2", 3)
    assert [p.holder for p in leaves] == [
        _by_hand_commitment(owner_salt(KEY, "ignition-s2", o), o) for o in ("owner-7", "owner-8")
    ]
    assert all("owner" not in p.holder for p in leaves)


@settings(max_examples=50, deadline=None)
@given(owners=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=12, unique=True))
def test_a_format_2_proof_shows_the_leaf_is_its_owners_and_nobody_elses(owners: list[str]) -> None:
    suppliers = pl.DataFrame({"owner_id": owners, "reward": list(range(len(owners)))})
    made = with_commitments(suppliers, KEY, "s")
    leaves = payout_leaves(made, "s", 1)
    root = merkle_root(leaves)
    readme = readme_code()
    for owner, holder in made.select("owner_id", "commitment").iter_rows():
        salt = owner_salt(KEY, "s", owner)
        document = proof_document(leaves, holder, owner_id=owner, salt=salt)
        assert document["format"] == PROOF_FORMAT and document["leaf"][0] == holder
        assert check_proof_document(document, root)
        assert readme["verify"](document["leaf"], document["proof"], root)  # the path
        assert readme["commitment_ok"](document)
        assert _by_hand_commitment(bytes.fromhex(document["salt"]), owner) == holder
        for forged in (
            {**document, "owner_id": owner + "x"},  # someone else claiming the leaf
            {**document, "salt": "00" * 32},
            {**document, "salt": document["salt"][:-2]},  # not 32 bytes
            {**document, "format": "ignition-rewards-proof/9"},
        ):
            assert not check_proof_document(forged, root)
            if forged["format"] == PROOF_FORMAT and len(forged["salt"]) == 64:
                assert not readme["commitment_ok"](forged)


def test_a_format_1_proof_from_before_still_verifies() -> None:
    """Proofs handed out before leaf format 2 name the owner_id and carry no format."""
    payouts = [Payout("owner-1", "ignition-s2", 2, 10), Payout("owner-2", "ignition-s2", 2, 20)]
    old = proof_document(payouts, "owner-1")
    assert "format" not in old and "salt" not in old
    assert check_proof_document(old, merkle_root(payouts))
    assert not check_proof_document({**old, "leaf": ["owner-1", "ignition-s2", 2, 11]})
