"""Snapshots over a real database (both dialects): identity, determinism, reruns after an
incident, diff and adjustments, immutability in the database, locking, export, proofs."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, text

from jobs.snapshots import snapshot_job
from rewards.core import device_epochs
from rewards.core.canonical_export import canonical_csv, content_hash
from rewards.core.merkle import check_proof_document, merkle_root, payout_leaves
from rewards.core.snapshot_rows import snapshot_rows
from rewards.db.engine import make_engine, unit_of_work
from rewards.db.snapshots import discard
from rewards.db.tables import Snapshot
from rewards.services.computing import ComputePlan
from rewards.services.exports import (
    EXPORT_FILES,
    adjustments_csv,
    export,
    export_file,
    verify_export,
)
from rewards.services.publication import RollbackRefused, publish
from rewards.services.runs import JobBusy, recent_runs
from rewards.services.snapshot_runs import RunOutcome, Stages, freeze_inputs, run_snapshot
from rewards.services.snapshots import (
    SnapshotConflict,
    SnapshotError,
    diff,
    proof,
    resolve,
    settle,
    stored_row_parts,
    stored_rows,
    stored_suppliers,
)
from rewards.settings import get_settings
from rewards.sim.server import UptimeSimulator
from tests.core.test_merkle import readme_verifier
from tests.seeded import KEY, NOW, POLICY, declare_forced_upgrade, ingested_copy

WEEK = range(7)
LOCK = timedelta(minutes=5)


def run(engine: Engine, *, force: bool = False, reason: str = "test", **kw: object) -> RunOutcome:
    return run_snapshot(
        engine,
        POLICY,
        epochs=WEEK,
        trigger="manual",
        triggered_by="admin@test",
        reason=reason,
        clock=lambda: NOW,
        key=KEY,
        lock_ttl=LOCK,
        force=force,
        **kw,  # type: ignore[arg-type]
    )


def test_a_run_records_its_identity_and_reconciles_to_the_pools(ingested: Engine) -> None:
    outcome = run(ingested)
    snap = outcome.snapshot
    assert outcome.created
    assert (snap.season, snap.version, snap.status) == ("ignition-s2", 1, "draft")
    assert (snap.epoch_first, snap.epoch_last) == (0, 6)
    assert snap.policy_hash == POLICY.policy_hash
    assert "+core." in snap.code_version
    assert (snap.trigger, snap.triggered_by, snap.reason) == ("manual", "admin@test", "test")

    rows = stored_rows(ingested, snap)
    assert rows.height == snap.device_epoch_rows == snap.devices * 7
    assert content_hash(canonical_csv(rows, POLICY.token_decimals)) == snap.content_hash
    suppliers = stored_suppliers(ingested, snap)
    assert suppliers.height == snap.suppliers
    paid_epochs = rows.filter(pl.col("eligible")).get_column("epoch").n_unique()
    assert snap.total_paid == paid_epochs * POLICY.pool_per_epoch
    assert int(suppliers.get_column("reward").sum()) + snap.total_unassigned == snap.total_paid
    assert snap.input_fingerprint == freeze_inputs(ingested, POLICY).fingerprint()
    runs = [r for r in recent_runs(ingested, 10) if r.job_id == "snapshot:ignition-s2"]
    assert [(r.id, r.status) for r in runs] == [(snap.job_run_id, "succeeded")]
    with ingested.connect() as connection:
        audited = connection.execute(
            text("SELECT actor, subject FROM audit_log WHERE action = 'snapshot.run'")
        ).all()
    assert audited == [("admin@test", "ignition-s2-v1")]

    again = run(ingested)  # nothing changed: no new version, same answer
    assert not again.created
    assert again.snapshot.id == snap.id
    forced = run(ingested, force=True)  # a new version over the same inputs: same bytes
    assert forced.created
    assert forced.snapshot.version == 2
    assert forced.snapshot.content_hash == snap.content_hash
    assert forced.snapshot.input_fingerprint == snap.input_fingerprint
    # the leaves carry the version, so the roots differ exactly by it
    assert forced.snapshot.merkle_root == merkle_root(payout_leaves(suppliers, snap.season, 2))


def test_any_compute_plan_stores_the_same_snapshot(
    ingested: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By one shard or many, in this process or two workers, stored in parts cut across
    the shards' batches: the rows are those of the whole computation in memory, and the
    fingerprint (incident versions derived shard by shard), hash, totals and root are the
    same."""
    declare_forced_upgrade(ingested)  # version-scoped: each shard derives its versions
    first = run(ingested).snapshot
    rows = stored_rows(ingested, first)
    whole = freeze_inputs(ingested, POLICY)
    assert whole.versions.height > 0
    assert rows.equals(whole.rows(POLICY, WEEK))
    assert first.input_fingerprint == whole.fingerprint()
    monkeypatch.setattr("rewards.db.snapshots.PART_ROWS", 17)  # parts cut across batches
    for plan in (ComputePlan(shard_devices=3), ComputePlan(shard_devices=5, workers=2)):
        again = run(ingested, force=True, plan=plan).snapshot
        assert again.input_fingerprint == first.input_fingerprint
        assert again.content_hash == first.content_hash
        assert (again.devices, again.suppliers, again.eligible_device_epochs) == (
            first.devices,
            first.suppliers,
            first.eligible_device_epochs,
        )
        assert stored_rows(ingested, again).equals(rows)
        suppliers = stored_suppliers(ingested, again)
        assert suppliers.equals(stored_suppliers(ingested, first))
        assert again.merkle_root == merkle_root(
            payout_leaves(suppliers, again.season, again.version)
        )
    with ingested.connect() as connection:
        sizes = (
            connection.execute(
                text("SELECT rows FROM snapshot_parts WHERE snapshot_id = :id ORDER BY part"),
                {"id": again.id},
            )
            .scalars()
            .all()
        )
    assert set(sizes[:-1]) == {17} and 0 < sizes[-1] <= 17


def test_the_same_inputs_give_the_same_bytes_hash_and_root_on_both_databases(
    databases, seeded: dict[str, str], small_fleet: UptimeSimulator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    made = {}
    for dialect in ("sqlite", "postgresql"):
        engine = make_engine(ingested_copy(databases, seeded, dialect, small_fleet))
        try:
            snap = run(engine).snapshot
            export(engine, snap, tmp_path / dialect)
            made[dialect] = snap
        finally:
            engine.dispose()
    a, b = made["sqlite"], made["postgresql"]
    for name in ("content_hash", "merkle_root", "input_fingerprint", "total_paid"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("device_epochs.csv", "suppliers.csv"):
        assert (tmp_path / "sqlite" / name).read_bytes() == (
            tmp_path / "postgresql" / name
        ).read_bytes()


def test_a_rerun_after_confirming_the_incident_changes_exactly_what_the_rules_say(
    ingested: Engine,
) -> None:
    v1 = run(ingested, reason="no incident declared").snapshot
    before_inputs = freeze_inputs(ingested, POLICY)
    declare_forced_upgrade(ingested)
    v2 = run(ingested, reason="forced upgrade confirmed").snapshot
    after_inputs = freeze_inputs(ingested, POLICY)
    assert v2.version == 2
    assert v2.input_fingerprint != v1.input_fingerprint

    def expected_rows(inputs):  # type: ignore[no-untyped-def]
        results = device_epochs(
            inputs.intervals,
            POLICY,
            incidents=inputs.incidents,
            devices=inputs.devices,
            incident_versions=inputs.versions,
        )
        return snapshot_rows(
            results, inputs.owners, epochs=WEEK, epoch_length_us=POLICY.epoch_length_us
        )

    old, new = expected_rows(before_inputs), expected_rows(after_inputs)
    assert stored_rows(ingested, v1).equals(old)
    assert stored_rows(ingested, v2).equals(new)
    joined = old.join(new, on=["device_id", "epoch"], suffix="_new")
    changed = joined.filter(
        (pl.col("eligible") != pl.col("eligible_new")) | (pl.col("reward") != pl.col("reward_new"))
    )
    # the incident credits only the forced upgrade's epoch and the recovery after it
    assert set(changed.get_column("epoch")) <= {5, 6, 7}
    assert changed.filter(~pl.col("eligible") & pl.col("eligible_new")).height > 0

    d = diff(ingested, v1, v2)
    found = {(r["device_id"], r["epoch"]): r["delta"] for r in d.rows.iter_rows(named=True)}
    wanted = {
        (r["device_id"], r["epoch"]): r["reward_new"] - r["reward"]
        for r in changed.iter_rows(named=True)
    }
    assert found == wanted
    assert (
        d.summary.device_epochs_regained
        == changed.filter(~pl.col("eligible") & pl.col("eligible_new")).height
    )
    # each epoch's pool is conserved: what some gain, others lose
    per_epoch = d.rows.group_by("epoch").agg(pl.col("delta").sum())
    assert (per_epoch.get_column("delta") == 0).all()
    owners_before = dict(stored_suppliers(ingested, v1).select("owner_id", "reward").iter_rows())
    owners_after = dict(stored_suppliers(ingested, v2).select("owner_id", "reward").iter_rows())
    deltas = dict(d.suppliers.select("owner_id", "delta").iter_rows())
    for owner in owners_before.keys() | owners_after.keys():
        delta = owners_after.get(owner, 0) - owners_before.get(owner, 0)
        assert deltas.get(owner, 0) == delta
    assert d.summary.moved == sum(v for v in deltas.values() if v > 0) > 0

    with pytest.raises(SnapshotError, match="between published"):
        settle(ingested, v1, v2)
    publish(ingested, v1, by="finance@test", clock=lambda: NOW, lock_ttl=LOCK)
    previous = publish(ingested, v2, by="finance@test", clock=lambda: NOW, lock_ttl=LOCK)
    assert previous is not None
    assert previous.id == v1.id
    v1, v2 = resolve(ingested, "ignition-s2-v1", "x"), resolve(ingested, "v2", "ignition-s2")
    assert (v1.status, v2.status, v2.supersedes_id) == ("superseded", "published", v1.id)
    adjustments = settle(ingested, v1, v2)
    assert dict(adjustments.select("owner_id", "adjustment").iter_rows()) == deltas
    owed = adjustments.filter(pl.col("direction") == "owed")
    assert (owed.get_column("adjustment") > 0).all()
    assert int(adjustments.get_column("adjustment").sum()) == v2.total_paid - v1.total_paid - (
        v2.total_unassigned - v1.total_unassigned
    )
    with pytest.raises(SnapshotError, match="nothing to settle"):  # a version against itself
        settle(ingested, v2, v2)
    # the CSV the pages hand finance carries every amount in tokens too (issue 17)
    table = pl.read_csv(adjustments_csv(adjustments, POLICY.token_decimals), infer_schema=False)
    assert table.columns == [
        "owner_id", "paid", "due", "adjustment", "direction",
        "paid_decimal", "due_decimal", "adjustment_decimal",
    ]  # fmt: skip
    scale = 10**POLICY.token_decimals
    for row in table.iter_rows(named=True):
        for amount in ("paid", "due", "adjustment"):
            assert Decimal(row[f"{amount}_decimal"]) * scale == int(row[amount])


def _refused(engine: Engine, statement: str, sid: int | None = None) -> None:
    with pytest.raises(sqlalchemy.exc.DBAPIError), engine.begin() as connection:
        connection.execute(text(statement), {"sid": sid})


def test_raw_sql_cannot_alter_a_published_snapshot(ingested: Engine) -> None:
    snap = run(ingested).snapshot
    publish(ingested, snap, by="finance@test", clock=lambda: NOW, lock_ttl=LOCK)
    sid = snap.id
    before = stored_rows(ingested, snap)
    for statement in (
        "UPDATE snapshots SET merkle_root = 'forged' WHERE id = :sid",
        "UPDATE snapshots SET total_paid = total_paid + 1 WHERE id = :sid",
        "UPDATE snapshots SET status = 'draft' WHERE id = :sid",
        "UPDATE snapshots SET published_by = 'mallory' WHERE id = :sid",
        "DELETE FROM snapshots WHERE id = :sid",
        "UPDATE snapshot_parts SET sha256 = 'forged' WHERE snapshot_id = :sid",
        "UPDATE snapshot_parts SET data = data WHERE snapshot_id = :sid",
        "DELETE FROM snapshot_parts WHERE snapshot_id = :sid",
        "UPDATE snapshot_payouts SET reward = 0 WHERE snapshot_id = :sid",
        "DELETE FROM snapshot_payouts WHERE snapshot_id = :sid",
        "DELETE FROM snapshot_epochs WHERE snapshot_id = :sid",
        "INSERT INTO snapshot_parts (snapshot_id, part, rows, first_device_id, last_device_id, "
        "sha256, data) VALUES (:sid, 99, 0, 'a', 'a', 'x', '')",
        "INSERT INTO snapshot_parts (snapshot_id, part, rows, first_device_id, last_device_id, "
        "sha256, data) VALUES (:sid + 1000, 0, 0, 'a', 'a', 'x', '')",
        "INSERT INTO snapshot_payouts (snapshot_id, owner_id, reward, devices, "
        "eligible_device_epochs) VALUES (:sid, 'mallory', 1, 1, 1)",
        "INSERT INTO snapshots (season, version, status, epoch_first, epoch_last, policy, "
        'policy_hash, input_fingerprint, code_version, "trigger", triggered_by, reason, '
        "device_epoch_rows, devices, suppliers, eligible_device_epochs, total_pool, total_paid, "
        "total_unassigned, content_hash, merkle_root, created_at) VALUES ('ignition-s2', 9, "
        "'published', 0, 0, '{}', 'x', 'x', 'x', 'manual', 'm', 'r', 0, 0, 0, 0, 0, 0, 0, "
        "'x', 'x', '2024-05-01 00:00:00')",
    ):
        _refused(ingested, statement, sid)
    if ingested.dialect.name == "postgresql":
        for table in ("snapshot_parts", "snapshot_payouts", "snapshot_epochs", "snapshots"):
            _refused(ingested, f"TRUNCATE {table} CASCADE")
    assert stored_rows(ingested, snap).equals(before)
    current = resolve(ingested, "v1", "ignition-s2")
    assert (current.status, current.merkle_root) == ("published", snap.merkle_root)

    # superseded is final too; a draft can still be discarded
    second = run(ingested, force=True).snapshot
    publish(ingested, second, by="finance@test", clock=lambda: NOW, lock_ttl=LOCK)
    _refused(ingested, "UPDATE snapshots SET status = 'published' WHERE id = :sid", sid)
    _refused(ingested, "DELETE FROM snapshot_parts WHERE snapshot_id = :sid", sid)
    draft = run(ingested, force=True).snapshot
    _refused(ingested, "DELETE FROM snapshots WHERE id = :sid", draft.id)  # rows first
    with unit_of_work(ingested) as session:
        discard(session, draft)
    with unit_of_work(ingested) as session:
        assert session.get(Snapshot, draft.id) is None
        count = session.execute(
            text("SELECT count(*) FROM snapshot_parts WHERE snapshot_id = :id"), {"id": draft.id}
        ).scalar_one()
        assert count == 0


def test_two_runs_for_one_season_cannot_both_proceed(ingested: Engine) -> None:
    inside, release = threading.Event(), threading.Event()
    outcomes: list[object] = []

    def hold(stage: str) -> None:
        if stage == "compute":
            inside.set()
            release.wait(30)

    def first() -> None:
        try:
            outcomes.append(run(ingested, stages=Stages(on_stage=hold)))
        except Exception as exc:
            outcomes.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(30)
        with pytest.raises(JobBusy, match=r"snapshot:ignition-s2 is already running"):
            run(ingested)
    finally:
        release.set()
        thread.join(60)
    assert isinstance(outcomes[0], RunOutcome)
    assert outcomes[0].snapshot.version == 1
    assert run(ingested).snapshot.version == 1  # the lock is free again; nothing changed


def test_a_run_failing_mid_write_leaves_no_partial_snapshot(ingested: Engine) -> None:
    class Crash(RuntimeError):
        pass

    def crash_while_writing(stage: str) -> None:
        if stage == "write":
            raise Crash("simulated crash")

    with pytest.raises(Crash):
        run(ingested, stages=Stages(on_stage=crash_while_writing))
    with unit_of_work(ingested) as session:
        for table in ("snapshots", "snapshot_parts", "snapshot_payouts", "snapshot_epochs"):
            assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0  # noqa: S608
        ran = "SELECT count(*) FROM audit_log WHERE action = 'snapshot.run'"
        assert session.execute(text(ran)).scalar_one() == 0  # its audit entry went too
    runs = [r for r in recent_runs(ingested, 10) if r.job_id == "snapshot:ignition-s2"]
    assert [r.status for r in runs] == ["failed"]
    assert run(ingested).snapshot.version == 1


def test_an_export_verifies_against_its_manifest_and_tampering_is_caught(
    ingested: Engine, tmp_path: Path
) -> None:
    snap = run(ingested).snapshot
    manifest = export(ingested, snap, tmp_path / "export")
    files = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert files == [
        "device_epochs.csv",
        "device_epochs.parquet",
        "manifest.json",
        "suppliers.csv",
        "suppliers.parquet",
    ]
    assert verify_export(tmp_path / "export") == []
    assert manifest["files"]["device_epochs.csv"]["sha256"] == snap.content_hash
    for epoch in manifest["epochs_totals"]:
        assert epoch["paid"] in (0, epoch["pool"])
    rows = pl.read_csv(
        tmp_path / "export" / "device_epochs.csv", schema_overrides={"reward_decimal": pl.String}
    )
    assert rows.height == manifest["rows"]["device_epochs"]
    sample = rows.filter(pl.col("reward") > 0).row(0, named=True)
    assert sample["reward_decimal"] == f"{sample['reward'] / 10**6:.6f}"
    with pytest.raises(SnapshotError, match="not empty"):
        export(ingested, snap, tmp_path / "export")

    tampered = tmp_path / "export" / "suppliers.csv"
    tampered.write_text(tampered.read_text().replace(",", ";", 1))
    assert verify_export(tmp_path / "export") == [
        "suppliers.csv: SHA-256 or size differs from the manifest"
    ]


def test_one_export_file_is_built_alone_with_the_same_bytes_as_the_whole_export(
    ingested: Engine, tmp_path: Path
) -> None:
    snap = run(ingested).snapshot
    export(ingested, snap, tmp_path / "whole")
    for name in EXPORT_FILES:
        alone = tmp_path / name.replace(".", "_")
        alone.mkdir()
        path = export_file(ingested, snap, name, alone)
        made = sorted(p.name for p in alone.rglob("*") if p.is_file())
        if name != "manifest.json":  # the manifest vouches for every file, so needs them
            assert made == [name]
        assert path.read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_an_export_streams_the_stored_parts_and_refuses_rows_that_do_not_hash(
    ingested: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored in many small parts, the export's files are those of the rows whole; when
    the rows read back no longer hash to the content hash, nothing is exported, whole or
    one file alone."""
    monkeypatch.setattr("rewards.db.snapshots.PART_ROWS", 23)
    snap = run(ingested).snapshot
    export(ingested, snap, tmp_path / "whole")
    rows = stored_rows(ingested, snap)
    assert (tmp_path / "whole" / "device_epochs.csv").read_bytes() == canonical_csv(rows, 6)
    exported = pl.read_parquet(tmp_path / "whole" / "device_epochs.parquet")
    assert exported.drop("reward_decimal").equals(rows)
    stored = stored_row_parts

    def altered(engine: Engine, snapshot: object) -> object:  # storage changed underneath
        for i, part in enumerate(stored(engine, snapshot)):  # type: ignore[arg-type]
            yield part.with_columns(pl.col("reward") + (i == 2)) if i == 2 else part

    monkeypatch.setattr("rewards.services.exports.stored_row_parts", altered)
    for name in ("device_epochs.csv", "device_epochs.parquet"):
        with pytest.raises(SnapshotConflict, match="do not hash to the snapshot's content"):
            export_file(ingested, snap, name, tmp_path)
    with pytest.raises(SnapshotConflict, match="do not hash"):
        export(ingested, snap, tmp_path / "refused")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whole"]


def test_every_supplier_proof_verifies_against_the_published_root(ingested: Engine) -> None:
    snap = run(ingested).snapshot
    publish(ingested, snap, by="finance@test", clock=lambda: NOW, lock_ttl=LOCK)
    verify = readme_verifier()
    suppliers = stored_suppliers(ingested, snap)
    assert suppliers.height > 5
    for owner, amount, held in suppliers.select("owner_id", "reward", "commitment").iter_rows():
        document = proof(ingested, snap, owner, KEY)
        assert document["leaf"] == [held, "ignition-s2", 1, amount] and held != owner
        assert document["owner_id"] == owner and document["root"] == snap.merkle_root
        assert check_proof_document(document)
        assert verify(document["leaf"], document["proof"], snap.merkle_root)
        richer = {**document, "leaf": [held, "ignition-s2", 1, amount + 1]}
        assert not check_proof_document(richer)
        assert not verify(richer["leaf"], document["proof"], snap.merkle_root)
        if document["proof"]:
            bent = [dict(step) for step in document["proof"]]
            bent[0]["sibling"] = "00" * 32
            assert not check_proof_document({**document, "proof": bent})
    with pytest.raises(SnapshotError, match="no payout for supplier"):
        proof(ingested, snap, "nobody", KEY)


def test_the_scheduled_job_snapshots_each_epoch_once_it_has_settled(ingested: Engine) -> None:
    settings = get_settings(snapshot_settlement_s=7200, job_lock_s=60)
    moment = {"now": datetime(2024, 4, 20, 23, 0, tzinfo=UTC)}
    job = snapshot_job(ingested, settings, POLICY, clock=lambda: moment["now"])

    assert job() is None  # epoch 0 has not even ended
    moment["now"] = datetime(2024, 4, 21, 1, 59, tzinfo=UTC)
    assert job() is None  # ended, but late heartbeats have until 02:00
    moment["now"] = datetime(2024, 4, 21, 2, 0, tzinfo=UTC)
    first = job()
    assert first is not None
    assert (first.version, first.epoch_first, first.epoch_last) == (1, 0, 0)
    assert (first.trigger, first.triggered_by) == ("scheduled", "scheduler")
    assert job() is None  # nothing new has settled
    moment["now"] = datetime(2024, 4, 23, 3, 0, tzinfo=UTC)
    second = job()
    assert second is not None
    assert (second.version, second.epoch_last) == (2, 2)
    assert second.reason == "epoch 2 closed and settled"
    assert job() is None


def test_publishing_an_older_version_over_a_newer_one_needs_a_reason_and_is_audited(
    ingested: Engine,
) -> None:
    v1 = run(ingested, reason="no incident declared").snapshot
    declare_forced_upgrade(ingested)
    v2 = run(ingested, reason="forced upgrade confirmed").snapshot
    publish(ingested, v2, by="finance@test", clock=lambda: NOW, lock_ttl=LOCK)

    for reason in (None, "", "   "):
        with pytest.raises(RollbackRefused, match="older than the published ignition-s2-v2"):
            publish(
                ingested, v1, by="mallory@test", clock=lambda: NOW, lock_ttl=LOCK,
                rollback_reason=reason,
            )  # fmt: skip
    current = resolve(ingested, "v2", "ignition-s2")
    assert current.status == "published"
    assert resolve(ingested, "v1", "ignition-s2").status == "draft"

    previous = publish(
        ingested, v1, by="finance@test", clock=lambda: NOW, lock_ttl=LOCK,
        rollback_reason="v2 paid the wrong pool; finance ticket 17",
    )  # fmt: skip
    assert previous is not None and previous.id == v2.id
    assert resolve(ingested, "v1", "ignition-s2").status == "published"
    assert resolve(ingested, "v2", "ignition-s2").status == "superseded"
    with ingested.connect() as connection:
        actions = connection.execute(
            text(
                "SELECT action, actor, subject, details FROM audit_log "
                "WHERE action LIKE 'snapshot.%' ORDER BY id"
            )
        ).all()
    assert [a[:3] for a in actions[-2:]] == [
        ("snapshot.publish", "finance@test", "ignition-s2-v2"),
        ("snapshot.rollback", "finance@test", "ignition-s2-v1"),
    ]
    details = json.loads(actions[-1][3])
    assert details["reason"] == "v2 paid the wrong pool; finance ticket 17"
    assert details["supersedes"] == "ignition-s2-v2"
    assert details["moves"]["moved"] == diff(ingested, v2, v1).summary.moved > 0
