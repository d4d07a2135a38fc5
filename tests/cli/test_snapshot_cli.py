"""`rewards snapshot ...` as an admin and finance use it, as real processes on both databases:
the whole flow, bad references, and a run killed in the middle of its write."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from rewards.core.merkle import Payout, leaf_hash
from rewards.db.engine import make_engine
from tests.processes import REWARDS, cli


def ok(*args: str, env: dict[str, str]) -> str:
    done = cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


@pytest.mark.parametrize("dialect", ["sqlite"])  # the CLI's wiring; services test both databases
def test_run_publish_diff_adjust_export_and_prove(env: dict[str, str], tmp_path: Path) -> None:
    by = ("--by", "admin.example.org")
    v1 = ok("snapshot", "run", "--epochs", "0:6", "--reason", "first look", *by, env=env)
    assert "ignition-s2-v1" in v1 and "draft" in v1
    same = ok("snapshot", "run", "--epochs", "0:6", "--reason", "again", *by, env=env)
    assert "no new version" in same
    ok(
        "incidents",
        "declare",
        "apr-25",
        "--start",
        "2024-04-25T08:05:00Z",
        "--end",
        "2024-04-25T09:05:00Z",
        "--deadline",
        "48h",
        "--scope",
        '{"agent_version_below": "0.10"}',
        "--reason",
        "forced upgrade",
        *by,
        env=env,
    )
    v2 = ok("snapshot", "run", "--epochs", "0:6", "--reason", "incident confirmed", *by, env=env)
    assert "ignition-s2-v2" in v2
    ok("snapshot", "publish", "v1", *by, env=env)
    published = ok("snapshot", "publish", "ignition-s2-v2", *by, env=env)
    assert "ignition-s2-v1 is now superseded" in published

    listing = ok("snapshot", "list", env=env).splitlines()
    assert listing[0].startswith("snapshot\tstatus")
    assert [line.split("\t")[:2] for line in listing[1:]] == [
        ["ignition-s2-v2", "published"],
        ["ignition-s2-v1", "superseded"],
    ]

    summary = ok("snapshot", "diff", "v1", "v2", "--out", str(tmp_path / "diff"), env=env)
    assert "regained eligibility" in summary and "base units moved" in summary
    assert (tmp_path / "diff" / "device_epochs.parquet").is_file()
    adjusted = ok("snapshot", "adjustments", "v1", "v2", "--out", str(tmp_path / "adj"), env=env)
    assert "are owed" in adjusted
    assert (
        (tmp_path / "adj" / "adjustments.csv")
        .read_text()
        .startswith("owner_id,paid,due,adjustment,direction,")
    )

    ok("snapshot", "export", "v2", "--out", str(tmp_path / "export"), env=env)
    assert "match the manifest" in ok(
        "snapshot", "verify-export", str(tmp_path / "export"), env=env
    )
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    owner = manifest and (tmp_path / "export" / "suppliers.csv").read_text().splitlines()[1]
    supplier = owner.split(",")[0]
    proof_file = tmp_path / "proof.json"
    ok("snapshot", "proof", "v2", "--supplier", supplier, "--out", str(proof_file), env=env)
    document = json.loads(proof_file.read_text())
    assert document["root"] == manifest["merkle_root"]
    assert "valid" in ok(
        "snapshot", "verify-proof", str(proof_file), "--root", manifest["merkle_root"], env=env
    )
    document["leaf"][3] += 1
    proof_file.write_text(json.dumps(document))
    forged = cli("snapshot", "verify-proof", str(proof_file), env=env)
    assert forged.returncode == 1 and "invalid" in forged.stderr


RUN = ("--by", "a", "--reason", "r")
DAYS = ("--from", "2024-04-23", "--to", "2024-04-24")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("snapshot", "show", "v9"), "no snapshot ignition-s2-v9"),
        (("snapshot", "show", "latest"), "expected SEASON-vN"),
        (("snapshot", "proof", "v9", "--supplier", "x"), "no snapshot"),
        (("snapshot", "run", "--by", "a", "--reason", "r", "--epochs", "5:2"), "--epochs"),
        (("snapshot", "run", "--by", "a", "--reason", "r", "--epochs", "0:30"), "0 to 29"),
        (("snapshot", "run", "--by", "a", "--reason", "r", "--season", "nope"), "nope.toml"),
        # actors are identifiers (DESIGN 10): no look-alikes, no e-mail-style names
        (("snapshot", "run", "--by", "alice@example.org", "--reason", "r"), "--by 'alice@"),
        (("snapshot", "run", "--by", " alice", "--reason", "r"), "no spaces"),
        (("snapshot", "publish", "v1", "--by", "ali\u0441e"), "non-ASCII"),
        (("incidents", "confirm", "x", "--by", "admin\u200d"), "non-ASCII"),
        (("incidents", "dismiss", "x", "--by", "admin\u202e"), "non-ASCII"),
        # who computes: local processes or a Dask scheduler, one of them, named properly
        (("snapshot", "run", *RUN, "--workers", "2", "--scheduler", "tcp://h:1"), "give one"),
        (("snapshot", "run", *RUN, "--scheduler", "h:8786"), "tcp://host:port"),
        (("snapshot", "run", *RUN, "--scheduler", "tcp://h:1; rm"), "tcp://host:port"),
        (("intervals", "rebuild", "--workers", "1", "--scheduler", "tcp://h:1"), "give one"),
        (("intervals", "rebuild", "--workers", "2", *DAYS), "rebuilds everything"),
    ],
)
@pytest.mark.parametrize("dialect", ["sqlite"])  # argument handling: one database is enough
def test_bad_requests_are_messages(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    done = cli(*args, env=env)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_publishing_twice_or_exporting_over_files_is_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    ok("snapshot", "run", "--epochs", "0:6", "--reason", "r", "--by", "a", env=env)
    ok("snapshot", "publish", "v1", "--by", "a", env=env)
    again = cli("snapshot", "publish", "v1", "--by", "a", env=env)
    assert again.returncode == 2 and "only a draft can be published" in again.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    over = cli("snapshot", "export", "v1", "--out", str(tmp_path / "taken"), env=env)
    assert over.returncode == 2 and "not empty" in over.stderr
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("dialect", ["sqlite"])  # the CLI's wiring; services test both databases
def test_an_audit_bundle_is_reproduced_without_the_database_and_an_edit_fails_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    ok("snapshot", "run", "--epochs", "0:6", "--reason", "r", "--by", "a", env=env)
    bundle = tmp_path / "audit"
    made = ok("snapshot", "audit-bundle", "v1", "--out", str(bundle), env=env)
    assert "ignition-s2-v1's audit bundle" in made and (bundle / "salts.csv").is_file()
    nowhere = {**env, "REWARDS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    shown = ok("snapshot", "reproduce", str(bundle), env=nowhere)
    assert "reproduced: every check matches" in shown and "MISMATCH" not in shown
    document = json.loads(ok("snapshot", "reproduce", str(bundle), "--json", env=nowhere))
    assert document["reproduced"] is True
    assert {c["name"] for c in document["checks"]} >= {
        "input fingerprint",
        "content hash",
        "Merkle root",
        "policy hash",
    }
    policy = json.loads((bundle / "policy.json").read_text())
    (bundle / "policy.json").write_text(json.dumps({**policy, "min_uptime_ratio": "1/2"}))
    failed = cli("snapshot", "reproduce", str(bundle), env=nowhere)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "policy hash" in failed.stdout and "MISMATCH" in failed.stdout
    assert "min_uptime_ratio: '1/2'" in failed.stdout
    not_one = cli("snapshot", "reproduce", str(tmp_path), env=nowhere)
    assert not_one.returncode == 2 and "not an audit bundle" in not_one.stderr.replace("\n", " ")


@pytest.mark.parametrize("dialect", ["sqlite"])  # the CLI's wiring; services test both databases
def test_publishing_an_older_version_is_refused_without_override_and_reason_and_shows_the_diff(
    env: dict[str, str],
) -> None:
    by = ("--by", "admin.example.org")
    ok("snapshot", "run", "--epochs", "0:6", "--reason", "first", *by, env=env)
    ok("snapshot", "run", "--epochs", "0:6", "--reason", "second", "--force", *by, env=env)
    ok("snapshot", "publish", "v2", *by, env=env)

    refused = cli("snapshot", "publish", "v1", *by, env=env)
    assert refused.returncode == 1, refused.stdout
    assert "older than the published ignition-s2-v2" in refused.stderr
    assert "--override-rollback" in refused.stderr
    assert "ignition-s2-v2 -> ignition-s2-v1" in refused.stdout  # the diff it would cause
    assert "base units moved" in refused.stdout
    no_reason = cli("snapshot", "publish", "v1", "--override-rollback", *by, env=env)
    assert no_reason.returncode == 2 and "needs --reason" in no_reason.stderr
    listing = ok("snapshot", "list", env=env).splitlines()[1:]
    assert [line.split("\t")[:2] for line in listing] == [
        ["ignition-s2-v2", "published"],
        ["ignition-s2-v1", "draft"],
    ]

    done = ok(
        "snapshot",
        "publish",
        "v1",
        "--override-rollback",
        "--reason",
        "v2 was wrong",
        *by,
        env=env,
    )
    assert "ignition-s2-v2 -> ignition-s2-v1" in done
    assert "ignition-s2-v2 is now superseded" in done
    engine = make_engine(env["REWARDS_DATABASE_URL"])
    with engine.connect() as connection:
        action, details = connection.execute(
            text("SELECT action, details FROM audit_log ORDER BY id DESC LIMIT 1")
        ).one()
    engine.dispose()
    assert action == "snapshot.rollback"
    assert json.loads(details)["reason"] == "v2 was wrong"


@pytest.mark.parametrize("dialect", ["sqlite"])  # the root comes through the service layer
def test_verify_proof_without_root_checks_the_published_root_not_the_files_own(
    env: dict[str, str], tmp_path: Path
) -> None:
    by = ("--by", "admin.example.org")
    ok("snapshot", "run", "--epochs", "0:6", "--reason", "r", *by, env=env)
    ok("snapshot", "publish", "v1", *by, env=env)
    engine = make_engine(env["REWARDS_DATABASE_URL"])
    with engine.connect() as connection:
        owner = connection.execute(text("SELECT min(owner_id) FROM snapshot_payouts")).scalar_one()
    engine.dispose()
    root = json.loads(ok("snapshot", "proof", "v1", "--supplier", owner, env=env))["root"]
    # a forged proof that is consistent with itself: one leaf paying far more, its own root
    leaf = [owner, "ignition-s2", 1, 10**18]
    forged = tmp_path / "forged.json"
    forged.write_text(
        json.dumps({"leaf": leaf, "proof": [], "root": leaf_hash(Payout(*leaf)).hex()})
    )
    refused = cli("snapshot", "verify-proof", str(forged), env=env)
    assert refused.returncode == 1, refused.stdout
    assert "invalid" in refused.stderr
    assert f"checked against root {root} of ignition-s2-v1 (published)" in refused.stderr

    genuine = tmp_path / "genuine.json"
    ok("snapshot", "proof", "v1", "--supplier", owner, "--out", str(genuine), env=env)
    valid = ok("snapshot", "verify-proof", str(genuine), env=env)
    assert f"checked against root {root} of ignition-s2-v1 (published) from the engine" in valid

    elsewhere = json.dumps({"leaf": [*leaf[:2], 9, leaf[3]], "proof": [], "root": "00" * 32})
    forged.write_text(elsewhere)  # a snapshot the engine never made: no root to trust
    unknown = cli("snapshot", "verify-proof", str(forged), env=env)
    assert unknown.returncode == 2
    assert "no --root given" in unknown.stderr and "ignition-s2-v9" in unknown.stderr
    given = cli("snapshot", "verify-proof", str(genuine), "--root", root, env=env)
    assert given.returncode == 0 and "given with --root" in given.stdout


def test_a_run_killed_mid_way_leaves_no_snapshot_and_holds_its_lock_until_it_lapses(
    env: dict[str, str],
) -> None:
    """Once the run computes, another transaction takes a lock the run needs to write
    (PostgreSQL: the epoch totals table, so the run has begun writing its draft; SQLite:
    the database's write lock). The run is SIGKILLed while it waits."""
    env = {**env, "REWARDS_JOB_LOCK_S": "10"}
    engine = make_engine(env["REWARDS_DATABASE_URL"])
    process = subprocess.Popen(
        [*REWARDS, "snapshot", "run", "--epochs", "0:6", "--reason", "r", "--by", "a"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    blocker = engine.connect()
    blocking = blocker.begin()
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "snapshot: compute" in line:
                break
        if engine.dialect.name == "postgresql":
            blocker.execute(text("LOCK TABLE snapshot_epochs IN ACCESS EXCLUSIVE MODE"))
        else:
            blocker.exec_driver_sql("BEGIN IMMEDIATE")
        time.sleep(1.5)  # the run is now waiting for our lock
        assert process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        blocking.rollback()
        blocker.close()
    with engine.connect() as connection:
        for table in ("snapshots", "snapshot_parts", "snapshot_payouts", "snapshot_epochs"):
            assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0  # noqa: S608
    engine.dispose()

    busy = cli("snapshot", "run", "--epochs", "0:6", "--reason", "r", "--by", "a", env=env)
    assert busy.returncode == 3 and "already running" in busy.stderr  # the dead run's lease
    runs = [line.split("\t") for line in ok("runs", env=env).splitlines()[1:]]
    # still 'running' until the next holder, once the lease lapses, marks it abandoned
    # (tests/jobs/test_ingest_e2e.py waits for that on the same mechanism)
    assert [r[4] for r in runs if r[1] == "snapshot:ignition-s2"] == ["running"]
