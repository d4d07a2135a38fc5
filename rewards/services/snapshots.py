"""Use cases for snapshots (DESIGN 5): run, publish, diff, adjustments, export, prove.

A run holds the season's lock (a database lease, so it works on SQLite and PostgreSQL and
across processes), reads its inputs in one read transaction, computes with the pure core
and writes the draft, its rows, payouts and epoch totals in one write transaction: a run
killed at any point leaves nothing but its failed (or abandoned) job run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

import rewards.core
from rewards.core import (
    CSV_INJECTION,
    DiffSummary,
    SeasonPolicy,
    adjustments,
    canonical_csv,
    content_hash,
    csv_bytes,
    device_epochs,
    diff_rows,
    diff_suppliers,
    epoch_totals,
    export_rows,
    fingerprint,
    leaf_hash,
    merkle_root,
    payout_leaves,
    proof_document,
    reward_decimal,
    snapshot_rows,
    summarize,
    supplier_totals,
)
from rewards.db import audit
from rewards.db import snapshots as store
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import load_intervals
from rewards.db.incidents import (
    devices_frame,
    incidents,
    incidents_frame,
    owners_frame,
    versions_at,
)
from rewards.db.tables import Snapshot
from rewards.services.files import fsync_path
from rewards.services.runs import exclusive_run


class SnapshotError(ValueError):
    """A snapshot request cannot be done; the message says why."""


def code_version() -> str:
    """The engine's version, a digest of the rules' source (rewards/core) and the polars
    version, so that a snapshot names the code that computed it."""
    try:
        package = version("ignition-rewards")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        package = "0+unknown"
    digest = hashlib.sha256()
    for path in sorted(Path(rewards.core.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{package}+core.{digest.hexdigest()[:12]} polars-{pl.__version__}"


def label(snapshot: Snapshot) -> str:
    """How people name a snapshot: <season>-v<version>."""
    return f"{snapshot.season}-v{snapshot.version}"


_REF = re.compile(r"(?:(?P<season>.+)-)?v(?P<version>\d+)|(?P<bare>\d+)")


def resolve(engine: Engine, ref: str, default_season: str) -> Snapshot:
    """The snapshot named `ref`: 'ignition-s2-v3', 'v3' or '3' (of the default season)."""
    match = _REF.fullmatch(ref.strip())
    if not match:
        raise SnapshotError(f"snapshot {ref!r}: expected SEASON-vN, vN or N")
    season = match.group("season") or default_season
    number = int(match.group("version") or match.group("bare"))
    with unit_of_work(engine) as session:
        found = store.find(session, season, number)
    if found is None:
        raise SnapshotError(f"no snapshot {season}-v{number}")
    return found


@dataclass(frozen=True)
class Inputs:
    """Everything a snapshot depends on, read in one transaction."""

    intervals: pl.DataFrame
    incidents: pl.DataFrame
    versions: pl.DataFrame
    devices: pl.DataFrame
    owners: pl.DataFrame

    def rows(self, policy: SeasonPolicy, epochs: range) -> pl.DataFrame:
        """The canonical device-epoch rows of `epochs` (SNAPSHOT_ROWS, owners attached)
        under `policy`: what a snapshot stores and the eligibility view shows."""
        results = device_epochs(
            self.intervals,
            policy,
            incidents=self.incidents,
            devices=self.devices,
            incident_versions=self.versions,
        )
        return snapshot_rows(
            results, self.owners, epochs=epochs, epoch_length_us=policy.epoch_length_us
        )

    def fingerprint(self) -> str:
        return fingerprint(
            {
                "intervals": self.intervals,
                "incidents": self.incidents,
                "incident_versions": self.versions,
                "devices": self.devices,
                "owners": self.owners,
            }
        )


def freeze_inputs(engine: Engine) -> Inputs:
    """Read the inputs as of one moment: a repeatable-read transaction on PostgreSQL, a
    read transaction (one WAL snapshot) on SQLite, so a concurrent ingest is either wholly
    in or wholly out."""
    from sqlmodel import Session

    options: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    with (
        engine.connect().execution_options(**options) as connection,
        connection.begin(),
        Session(bind=connection) as session,
    ):
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN")  # pysqlite would not begin for reads
        confirmed = incidents_frame(incidents(session, "confirmed"))
        return Inputs(
            intervals=load_intervals(connection),
            incidents=confirmed,
            versions=versions_at(session, confirmed),
            devices=devices_frame(session),
            owners=owners_frame(session),
        )


@dataclass
class Stages:
    """Seconds spent in each stage of a run, in order (for progress and the benchmark)."""

    seconds: dict[str, float] = field(default_factory=dict)
    on_stage: Callable[[str], None] | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.on_stage:
            self.on_stage(name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


@dataclass(frozen=True)
class RunOutcome:
    snapshot: Snapshot
    created: bool  # False: the inputs are unchanged since `snapshot`, nothing was written


def run_snapshot(
    engine: Engine,
    policy: SeasonPolicy,
    *,
    epochs: range,
    trigger: str,
    triggered_by: str,
    reason: str,
    clock: Callable[[], datetime],
    lock_ttl: timedelta,
    force: bool = False,
    stages: Stages | None = None,
) -> RunOutcome:
    """Compute and store a draft snapshot of `epochs` (raises JobBusy, SnapshotError).

    When the season's newest snapshot has the same inputs, policy, code and epochs, no new
    version is made unless `force`: the answer would be the same bytes.
    """
    if not epochs:
        raise SnapshotError(f"season {policy.season_id}: no epoch to snapshot yet")
    stages = stages or Stages()
    season = policy.season_id
    with exclusive_run(
        engine,
        job_id=f"snapshot:{season}",
        trigger=trigger,
        clock=clock,
        ttl=lock_ttl,
    ) as context:
        with stages.stage("read inputs"):
            inputs = freeze_inputs(engine)
        with stages.stage("fingerprint"):
            prints = inputs.fingerprint()
        identity = (prints, policy.policy_hash, code_version(), epochs.start, epochs.stop - 1)
        with unit_of_work(engine) as session:
            newest = store.latest(session, season)
        if newest is not None and not force:
            same = (
                newest.input_fingerprint,
                newest.policy_hash,
                newest.code_version,
                newest.epoch_first,
                newest.epoch_last,
            )
            if same == identity:
                return RunOutcome(newest, created=False)
        context.renew()
        with stages.stage("compute"):
            rows = inputs.rows(policy, epochs)
            suppliers = supplier_totals(rows)
            totals = epoch_totals(rows, epochs, policy.pool_per_epoch)
        with stages.stage("canonical CSV and its hash"):
            digest = content_hash(canonical_csv(rows, policy.token_decimals))
        context.renew()
        with stages.stage("write"), unit_of_work(engine) as session:
            number = store.next_version(session, season)
            root = merkle_root(payout_leaves(suppliers, season, number))
            previous = store.published(session, season)
            header = Snapshot(
                season=season,
                version=number,
                status="draft",
                epoch_first=epochs.start,
                epoch_last=epochs.stop - 1,
                policy=json.dumps(policy.canonical(), sort_keys=True),
                policy_hash=policy.policy_hash,
                input_fingerprint=prints,
                code_version=identity[2],
                trigger=trigger,
                triggered_by=triggered_by,
                reason=reason,
                supersedes_id=previous.id if previous else None,
                device_epoch_rows=rows.height,
                devices=rows.get_column("device_id").n_unique(),
                suppliers=suppliers.height,
                eligible_device_epochs=int(rows.get_column("eligible").sum()),
                total_pool=policy.pool_per_epoch * len(epochs),
                total_paid=int(totals.get_column("paid").sum()),
                total_unassigned=int(totals.get_column("unassigned").sum()),
                content_hash=digest,
                merkle_root=root,
                job_run_id=context.run_id,
                created_at=clock(),
            )
            # The snapshot records the log's head as its rows are written (DESIGN 9), read
            # without the appenders' lock; the run's own entry is chained last, so the lock
            # that every audited write waits on is held for an instant, not for the bulk
            # insert of a fleet's device-epochs.
            head = audit.current_head(session)
            header.audit_entries, header.audit_hash = head.entries, head.hash
            store.insert(session, header, rows, suppliers, totals)
            audit.append(
                session,
                now=clock(),
                actor=triggered_by,
                action="snapshot.run",
                subject=f"{season}-v{number}",
                details={
                    "trigger": trigger,
                    "reason": reason,
                    "epochs": [epochs.start, epochs.stop - 1],
                    "content_hash": digest,
                    "input_fingerprint": prints,
                },
            )
            context.stored = rows.height
    return RunOutcome(header, created=True)


class RollbackRefused(SnapshotError):
    """Publishing would replace a newer published snapshot and no override was given."""


def rollback_from(engine: Engine, snapshot: Snapshot) -> Snapshot | None:
    """The season's published snapshot when it is newer than `snapshot`, so that publishing
    `snapshot` would roll the season back (DESIGN 9); None when publishing moves forward."""
    with unit_of_work(engine) as session:
        current = store.published(session, snapshot.season)
    return current if current is not None and current.version > snapshot.version else None


def publish(
    engine: Engine,
    snapshot: Snapshot,
    *,
    by: str,
    clock: Callable[[], datetime],
    lock_ttl: timedelta,
    rollback_reason: str | None = None,
) -> Snapshot | None:
    """Make a draft the season's published snapshot; returns the one it superseded.

    Publishing a version older than the published one is a rollback (DESIGN 9): refused
    with RollbackRefused unless `rollback_reason` says why; an allowed rollback is audited
    as `snapshot.rollback` with the reason and what it moves.
    """
    if snapshot.status != "draft":
        raise SnapshotError(
            f"{label(snapshot)} is {snapshot.status}: only a draft can be published"
        )
    reason = (rollback_reason or "").strip()
    newer = rollback_from(engine, snapshot)
    moves = diff(engine, newer, snapshot).summary if newer is not None and reason else None
    with (
        exclusive_run(
            engine,
            job_id=f"snapshot:{snapshot.season}",
            trigger="publish",
            clock=clock,
            ttl=lock_ttl,
        ),
        unit_of_work(engine) as session,
    ):
        current = session.get(Snapshot, snapshot.id)
        if current is None or current.status != "draft":
            raise SnapshotError(f"{label(snapshot)} is no longer a draft")
        replaced = store.published(session, snapshot.season)
        rollback = replaced is not None and replaced.version > current.version
        if rollback and replaced is not None and not reason:
            raise RollbackRefused(
                f"{label(snapshot)} is older than the published {label(replaced)}: publishing "
                "it would roll the season back; it needs an explicit rollback override and a "
                "reason"
            )
        if rollback and (newer is None or replaced is None or newer.id != replaced.id):
            raise SnapshotError("the published snapshot changed meanwhile: check and try again")
        details: dict[str, Any] = {
            "content_hash": snapshot.content_hash,
            "merkle_root": snapshot.merkle_root,
        }
        if rollback and moves is not None:
            details["reason"] = reason
            details["moves"] = {
                "device_epochs_changed": moves.device_epochs_changed,
                "device_epochs_regained": moves.device_epochs_regained,
                "device_epochs_lost": moves.device_epochs_lost,
                "suppliers_changed": moves.suppliers_changed,
                "moved": moves.moved,
            }
        details["supersedes"] = label(replaced) if replaced else None
        head = audit.append(
            session,
            now=clock(),
            actor=by,
            action="snapshot.rollback" if rollback else "snapshot.publish",
            subject=label(snapshot),
            details=details,
        )
        previous = store.mark_published(session, current, by=by, now=clock(), audit_head=head)
    return previous


def covering_snapshot(engine: Engine, season: str, epochs: range) -> Snapshot | None:
    """The newest snapshot of `season` that covers all of `epochs`, if any."""
    with unit_of_work(engine) as session:
        for snap in store.listing(session, season):
            if snap.epoch_first <= epochs.start and snap.epoch_last >= epochs.stop - 1:
                return snap
    return None


def list_snapshots(engine: Engine, season: str | None = None) -> list[Snapshot]:
    with unit_of_work(engine) as session:
        return store.listing(session, season)


def _current(engine: Engine, snapshot: Snapshot) -> Snapshot:
    """`snapshot` as stored now (its status may have changed since it was read)."""
    with unit_of_work(engine) as session:
        found = session.get(Snapshot, snapshot.id)
    if found is None:
        raise SnapshotError(f"{label(snapshot)} no longer exists")
    return found


def _policy_of(snapshot: Snapshot) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(snapshot.policy)
    return policy


def stored_rows(engine: Engine, snapshot: Snapshot) -> pl.DataFrame:
    """The snapshot's device-epoch rows (SNAPSHOT_ROWS), in canonical order."""
    assert snapshot.id is not None
    with engine.connect() as connection:
        try:
            return store.read_rows(connection, snapshot.id)
        except store.CorruptSnapshot as exc:
            raise SnapshotError(f"{label(snapshot)}: {exc}") from None


def stored_suppliers(engine: Engine, snapshot: Snapshot) -> pl.DataFrame:
    assert snapshot.id is not None
    with engine.connect() as connection:
        return store.read_suppliers(connection, snapshot.id)


def stored_epochs(engine: Engine, snapshot: Snapshot) -> pl.DataFrame:
    assert snapshot.id is not None
    with engine.connect() as connection:
        return store.read_epochs(connection, snapshot.id)


@dataclass(frozen=True)
class Diff:
    before: Snapshot
    after: Snapshot
    rows: pl.DataFrame  # per device-epoch that changed
    suppliers: pl.DataFrame  # per supplier whose reward changed
    summary: DiffSummary


def diff(engine: Engine, before: Snapshot, after: Snapshot) -> Diff:
    """What changed from `before` to `after` (two snapshots of one season)."""
    if before.season != after.season:
        raise SnapshotError(
            f"{label(before)} and {label(after)} are of different seasons: nothing to compare"
        )
    rows = diff_rows(stored_rows(engine, before), stored_rows(engine, after))
    suppliers = diff_suppliers(stored_suppliers(engine, before), stored_suppliers(engine, after))
    return Diff(before, after, rows, suppliers, summarize(rows, suppliers))


def settle(engine: Engine, paid: Snapshot, due: Snapshot) -> pl.DataFrame:
    """Finance's adjustments when published `due` replaces published `paid`."""
    for snapshot in (paid, due):
        if snapshot.status == "draft":
            raise SnapshotError(
                f"{label(snapshot)} is a draft: adjustments are between published snapshots"
            )
    if paid.season != due.season:
        raise SnapshotError(f"{label(paid)} and {label(due)} are of different seasons")
    return adjustments(stored_suppliers(engine, paid), stored_suppliers(engine, due))


def write_tables(
    frame: pl.DataFrame, directory: Path, name: str, decimals: int, amounts: list[str]
) -> None:
    """`frame` as NAME.csv and NAME.parquet in `directory`, with a decimal column beside
    each amount column; CSV cells that could start a formula are neutralised, Parquet
    keeps the raw values."""
    extra = [reward_decimal(c, decimals).alias(f"{c}_decimal") for c in amounts]
    table = frame.with_columns(extra)
    (directory / f"{name}.csv").write_bytes(csv_bytes(table))
    table.write_parquet(directory / f"{name}.parquet")


MANIFEST = "manifest.json"


@contextmanager
def fresh_directory(out: Path) -> Iterator[Path]:
    """A temporary directory renamed to `out` when the block succeeds; `out` must not
    exist yet (or be empty), so an export is whole or absent, never half-written.

    Before the rename every file in it (the block may already have synced some) and then
    the directory itself are fsynced; after it, the parent, so the rename is durable too.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SnapshotError(f"{out} already exists and is not empty: choose a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield partial
        for path in sorted(partial.iterdir(), key=lambda p: p.name == MANIFEST):
            fsync_path(path)
        fsync_path(partial)
        if out.exists():
            out.rmdir()
        partial.rename(out)
        fsync_path(out.parent)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export(engine: Engine, snapshot: Snapshot, out: Path) -> dict[str, Any]:
    """Write the finance export of `snapshot` to directory `out`; returns the manifest.

    device_epochs.csv is the canonical export: its SHA-256 is the snapshot's content hash,
    checked here before anything is written.
    """
    snapshot = _current(engine, snapshot)
    policy = _policy_of(snapshot)
    decimals = int(policy["token_decimals"])
    rows = stored_rows(engine, snapshot)
    data = canonical_csv(rows, decimals)
    if content_hash(data) != snapshot.content_hash:
        raise SnapshotError(
            f"{label(snapshot)}: the stored rows do not hash to the snapshot's content hash "
            f"({content_hash(data)} != {snapshot.content_hash}); not exporting"
        )
    suppliers = stored_suppliers(engine, snapshot)
    totals = stored_epochs(engine, snapshot)
    leaves = payout_leaves(suppliers, snapshot.season, snapshot.version)
    if merkle_root(leaves) != snapshot.merkle_root:
        raise SnapshotError(f"{label(snapshot)}: the stored payouts do not match the Merkle root")
    with fresh_directory(out) as directory:
        (directory / "device_epochs.csv").write_bytes(data)
        export_rows(rows, decimals).write_parquet(directory / "device_epochs.parquet")
        with_leaves = suppliers.with_columns(
            leaf_hash=pl.Series([leaf_hash(leaf).hex() for leaf in leaves], dtype=pl.String)
        )
        write_tables(with_leaves, directory, "suppliers", decimals, ["reward"])
        files = {}
        for path in sorted(directory.iterdir()):
            fsync_path(path)  # the data is on disk before a manifest can vouch for it
            files[path.name] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
        manifest = {
            "snapshot": label(snapshot),
            "season": snapshot.season,
            "version": snapshot.version,
            "status": snapshot.status,
            "epochs": [snapshot.epoch_first, snapshot.epoch_last],
            "policy_hash": snapshot.policy_hash,
            "policy": policy,
            "input_fingerprint": snapshot.input_fingerprint,
            "code_version": snapshot.code_version,
            "content_hash": snapshot.content_hash,
            "merkle_root": snapshot.merkle_root,
            # the audit log's head after the run and the publication (DESIGN 9): a log cut
            # short or rewound later no longer holds these entries
            "audit_head": {"entries": snapshot.audit_entries, "hash": snapshot.audit_hash},
            "published_audit_head": {
                "entries": snapshot.published_audit_entries,
                "hash": snapshot.published_audit_hash,
            },
            "token_decimals": decimals,
            "rows": {"device_epochs": rows.height, "suppliers": suppliers.height},
            "totals": {
                "pool": snapshot.total_pool,
                "paid": snapshot.total_paid,
                "paid_to_suppliers": int(suppliers.get_column("reward").sum()),
                "unassigned": snapshot.total_unassigned,
            },
            "epochs_totals": totals.to_dicts(),
            "files": files,
            "csv_injection": CSV_INJECTION,  # CSV cells only; Parquet keeps raw values
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")  # last
    return manifest


def verify_export(directory: Path) -> list[str]:
    """Problems found checking an export against its manifest (none: it verifies).

    Checks every file's SHA-256 and size, that device_epochs.csv hashes to the content
    hash, that each epoch's paid + nothing else reconciles with its pool, and that the
    suppliers' leaves give the Merkle root.
    """
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        return [f"manifest.json: {exc}"]
    problems = []
    for name, expected in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif _sha256(path) != expected["sha256"] or path.stat().st_size != expected["bytes"]:
            problems.append(f"{name}: SHA-256 or size differs from the manifest")
    if problems:
        return problems
    if manifest["files"]["device_epochs.csv"]["sha256"] != manifest["content_hash"]:
        problems.append("device_epochs.csv: does not hash to the snapshot's content hash")
    for epoch in manifest["epochs_totals"]:
        if epoch["eligible_devices"] and epoch["paid"] != epoch["pool"]:
            problems.append(f"epoch {epoch['epoch']}: paid {epoch['paid']} != pool {epoch['pool']}")
    rows = pl.read_parquet(directory / "device_epochs.parquet")
    paid = dict(rows.group_by("epoch").agg(pl.col("reward").sum()).iter_rows())
    listed = {e["epoch"]: e["paid"] for e in manifest["epochs_totals"]}
    if {epoch: paid.get(epoch, 0) for epoch in listed} != listed or not set(paid) <= set(listed):
        problems.append("device_epochs: rewards per epoch differ from the manifest's totals")
    suppliers = pl.read_parquet(directory / "suppliers.parquet")
    leaves = payout_leaves(suppliers, manifest["season"], manifest["version"])
    if merkle_root(leaves) != manifest["merkle_root"]:
        problems.append("suppliers: the payouts do not give the manifest's Merkle root")
    if int(suppliers.get_column("reward").sum()) != manifest["totals"]["paid_to_suppliers"]:
        problems.append("suppliers: rewards do not sum to the manifest's total")
    return problems


def proof(engine: Engine, snapshot: Snapshot, owner_id: str) -> dict[str, Any]:
    """The Merkle proof of `owner_id`'s payout in `snapshot` (SnapshotError if none)."""
    snapshot = _current(engine, snapshot)
    suppliers = stored_suppliers(engine, snapshot)
    leaves = payout_leaves(suppliers, snapshot.season, snapshot.version)
    try:
        document = proof_document(leaves, owner_id)
    except KeyError:
        raise SnapshotError(f"{label(snapshot)} has no payout for supplier {owner_id!r}") from None
    decimals = int(_policy_of(snapshot)["token_decimals"])
    amount = pl.DataFrame({"a": [document["leaf"][3]]}, schema={"a": pl.Int64})
    return {
        "snapshot": label(snapshot),
        "status": snapshot.status,
        "amount_decimal": amount.select(reward_decimal("a", decimals)).item(),
        **document,
    }


def root_of_record(engine: Engine, leaf: Any) -> Snapshot:
    """The snapshot a proof's leaf [owner_id, season, version, amount] names, whose stored
    Merkle root is the one to check the proof against (never the root inside the proof
    file, which anyone can forge with its leaf). SnapshotError when there is no such
    snapshot or it was never published."""
    try:
        _, season, number, _ = leaf
    except (TypeError, ValueError):
        raise SnapshotError("the proof's leaf is not [owner_id, season, version, amount]") from None
    if not isinstance(season, str) or isinstance(number, bool) or not isinstance(number, int):
        raise SnapshotError("the proof's leaf names no season and version")
    with unit_of_work(engine) as session:
        found = store.find(session, season, number)
    if found is None:
        raise SnapshotError(f"the engine has no snapshot {season}-v{number}")
    if found.status == "draft":
        raise SnapshotError(f"{label(found)} is a draft: its root was never published")
    return found
