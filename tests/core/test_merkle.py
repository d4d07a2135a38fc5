"""The payout Merkle tree: every proof verifies, any tampering fails, and the README's
stand-alone verifier agrees with the core."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core.merkle import Payout, ProofStep, merkle_proof, merkle_root, verify_proof
from rewards.settings import REPO_ROOT

payouts_strategy = st.lists(
    st.builds(
        Payout,
        owner_id=st.text(min_size=1, max_size=6),
        season=st.just("ignition-s2"),
        version=st.integers(1, 9),
        amount=st.integers(0, 10**30),
    ),
    max_size=20,
    unique_by=lambda p: p.owner_id,
)


def readme_verifier():  # type: ignore[no-untyped-def]
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- proof-verifier -->\n```python\n(.*?)```", text, re.S)
    assert code, "the README must keep its proof verifier"
    namespace: dict[str, object] = {}
    exec(code.group(1), namespace)  # noqa: S102 - our own README, checked on purpose
    return namespace["verify"]


@settings(max_examples=100, deadline=None)
@given(payouts=payouts_strategy)
def test_every_supplier_proof_verifies_in_the_core_and_with_the_readme_snippet(payouts) -> None:  # type: ignore[no-untyped-def]
    root = merkle_root(payouts)
    assert root == merkle_root(list(reversed(payouts)))  # leaf order does not matter
    verify = readme_verifier()
    for payout in payouts:
        proof = merkle_proof(payouts, payout.owner_id)
        assert verify_proof(payout, proof, root)
        leaf = [payout.owner_id, payout.season, payout.version, payout.amount]
        assert verify(leaf, [{"side": s.side, "sibling": s.sibling} for s in proof], root)


def test_tampered_amounts_proofs_and_roots_fail() -> None:
    payouts = [Payout(f"owner-{i}", "ignition-s2", 2, 1_000 * i) for i in range(5)]
    root = merkle_root(payouts)
    target = payouts[3]
    proof = merkle_proof(payouts, target.owner_id)
    assert verify_proof(target, proof, root)
    richer = Payout(target.owner_id, target.season, target.version, target.amount + 1)
    assert not verify_proof(richer, proof, root)
    other_version = Payout(target.owner_id, target.season, 3, target.amount)
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
