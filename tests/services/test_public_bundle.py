"""The public bundle and the standalone verifier (issue 18, items 1, 2 and 4): pseudonymous
leaves whose bundle names no owner and no device, the same bytes from SQLite and
PostgreSQL, and tools/verify_payout.py, run with `python -I` outside the virtualenv,
accepting exactly what checks: a proof (commitment and path), a claims file's root, a
bundle's hashes and root; any edit is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from rewards.db.engine import make_engine
from rewards.services.public_bundle import CLAIMS, PUBLIC_FILES, write_public_files
from rewards.services.publication import publish
from rewards.services.publication_key import KeyProblem, publication_key
from rewards.services.snapshots import SnapshotConflict, proof
from rewards.settings import REPO_ROOT
from tests.seeded import KEY, LOCK, NOW, ingested_copy
from tests.services.test_snapshots import run

PYTHON = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter without the venv
VERIFIER = REPO_ROOT / "tools" / "verify_payout.py"


def verify(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYTHON), "-I", str(VERIFIER), *map(str, args)],
        check=False, capture_output=True, text=True, timeout=60, cwd="/",
    )  # fmt: skip


def _published(engine: Engine):  # type: ignore[no-untyped-def]
    made = run(engine).snapshot
    publish(engine, made, by="finance@test", clock=lambda: NOW, lock_ttl=LOCK)
    return made


def test_the_bundle_names_nobody_and_the_standalone_verifier_checks_it(
    ingested: Engine, tmp_path: Path
) -> None:
    snap = _published(ingested)
    manifest = write_public_files(ingested, snap, tmp_path / "bundle")
    assert manifest["merkle_root"] == snap.merkle_root and manifest["leaf_format"] == 2
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == sorted(PUBLIC_FILES)
    with ingested.connect() as connection:
        owners = set(connection.execute(text("SELECT owner_id FROM suppliers")).scalars())
        devices = set(connection.execute(text("SELECT device_id FROM devices")).scalars())
    assert owners and devices
    for path in (tmp_path / "bundle").iterdir():
        body = path.read_text()
        assert [n for n in owners | devices if n in body] == [], path.name

    checked = verify("bundle", tmp_path / "bundle")
    assert checked.returncode == 0, checked.stderr
    assert snap.merkle_root in checked.stdout
    rooted = verify("root", tmp_path / "bundle" / CLAIMS)
    assert rooted.returncode == 0 and f"root {snap.merkle_root}" in rooted.stdout

    claims = (tmp_path / "bundle" / CLAIMS).read_text().splitlines()
    first = json.loads(claims[0])
    first["leaf"][3] += 1  # a richer claim
    (tmp_path / "bundle" / CLAIMS).write_text("\n".join([json.dumps(first), *claims[1:]]) + "\n")
    assert verify("bundle", tmp_path / "bundle").returncode == 1
    (tmp_path / "bundle" / CLAIMS).write_text("\n".join(claims) + "\n")
    assert verify("bundle", tmp_path / "bundle").returncode == 0
    edited = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    edited["merkle_root"] = "0" * 64
    (tmp_path / "bundle" / "manifest.json").write_text(json.dumps(edited))
    refused = verify("bundle", tmp_path / "bundle")
    assert refused.returncode == 1 and "the manifest says" in refused.stderr


def test_a_supplier_checks_their_proof_without_the_engine(ingested: Engine, tmp_path: Path) -> None:
    snap = _published(ingested)
    with ingested.connect() as connection:
        owner = connection.execute(text("SELECT min(owner_id) FROM suppliers")).scalar_one()
    document = proof(ingested, snap, owner, KEY)
    assert document["format"] == "ignition-rewards-proof/2" and document["owner_id"] == owner
    assert owner not in json.dumps(document["leaf"])
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(document))
    good = verify("proof", path, "--root", snap.merkle_root)
    assert good.returncode == 0 and f"{owner}'s commitment" in good.stdout
    for forged in (
        {**document, "owner_id": owner + "-not"},  # claiming another's leaf
        {**document, "salt": "11" * 32},
        {**document, "leaf": [*document["leaf"][:3], document["leaf"][3] + 1]},
    ):
        path.write_text(json.dumps(forged))
        assert verify("proof", path, "--root", snap.merkle_root).returncode == 1
    path.write_text(json.dumps(document))
    assert verify("proof", path, "--root", "ab" * 32).returncode == 1
    path.write_text("{not json")
    assert verify("proof", path, "--root", snap.merkle_root).returncode == 2


def test_a_draft_has_no_public_bundle(ingested: Engine, tmp_path: Path) -> None:
    draft = run(ingested).snapshot
    with pytest.raises(SnapshotConflict, match="draft"):
        write_public_files(ingested, draft, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_sqlite_and_postgresql_give_the_same_public_bundle(  # type: ignore[no-untyped-def]
    databases, seeded, small_fleet, tmp_path: Path
) -> None:
    made = {}
    for dialect in ("sqlite", "postgresql"):
        engine = make_engine(ingested_copy(databases, seeded, dialect, small_fleet))
        try:
            snap = _published(engine)
            write_public_files(engine, snap, tmp_path / dialect)
        finally:
            engine.dispose()
        made[dialect] = {p.name: p.read_bytes() for p in (tmp_path / dialect).iterdir()}
    assert made["sqlite"] == made["postgresql"]


def test_the_publication_key_is_made_once_private_and_refused_when_others_may_read_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "var" / "publication-key"
    key = publication_key(path)
    assert len(key) == 32 and publication_key(path) == key  # made once, then read
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    path.chmod(0o644)
    with pytest.raises(KeyProblem, match="others may read"):
        publication_key(path)
    path.chmod(0o600)
    path.write_text("not hex\n")
    with pytest.raises(KeyProblem, match="64 hex digits"):
        publication_key(path)
