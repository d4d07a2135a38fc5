"""Running a snapshot (DESIGN 5): the use cases "run now" (an admin) and "run what is due"
(the scheduler), and the run itself.

A run holds the season's lock (a database lease, so it works on SQLite and PostgreSQL and
across processes), reads its inputs in one consistent read, computes with the pure core and
writes the draft, its rows, payouts and epoch totals in one write transaction: a run killed
at any point leaves nothing but its failed (or abandoned) job run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import polars as pl
from sqlalchemy import Engine

import rewards.core
from rewards.archive import HeartbeatArchive
from rewards.core import (
    LEAF_FORMAT,
    RowsSummary,
    SeasonPolicy,
    device_epochs,
    fingerprint,
    merkle_root,
    parse_epoch_range,
    payout_leaves,
    snapshot_rows,
    summarize_rows,
    with_commitments,
)
from rewards.db import audit
from rewards.db import snapshots as store
from rewards.db.engine import consistent_read, unit_of_work
from rewards.db.incidents import (
    devices_frame,
    owners_frame,
)
from rewards.db.interval_reads import load_intervals
from rewards.db.tables import Snapshot
from rewards.services.computing import (
    ComputePlan,
    fingerprint_by_shard,
    read_by_shard,
    rows_by_shard,
    season_confirmed,
)
from rewards.services.kept_inputs import keep_inputs, prune_kept, still_needed
from rewards.services.records import SnapshotRecord
from rewards.services.runs import RunContext, exclusive_run
from rewards.services.settlement import settled_epochs
from rewards.services.snapshots import (
    SnapshotError,
    covering_snapshot,
    list_snapshots,
    record,
)
from rewards.services.versions import incident_versions_of


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


def freeze_inputs(
    engine: Engine, policy: SeasonPolicy, archive: HeartbeatArchive | None = None
) -> Inputs:
    """Read the inputs as of one moment, so a concurrent ingest is wholly in or wholly out
    (the archive's heartbeats before an incident's start are long written by then), whole:
    the plain reading that runs by shard (`computing.read_by_shard`) are checked against,
    fine at demo size and too big for a fleet."""
    with consistent_read(engine) as (connection, session):
        confirmed, window = season_confirmed(session, policy)
        intervals = load_intervals(connection, window)
        return Inputs(
            intervals=intervals,
            incidents=confirmed,
            versions=incident_versions_of(connection, confirmed, intervals, policy, archive),
            devices=devices_frame(session),
            owners=owners_frame(session),
        )


@dataclass
class Stages:
    """Seconds spent in each stage of a run, in order (for progress and the benchmark)."""

    seconds: dict[str, float] = field(default_factory=dict)
    on_stage: Callable[[str], None] | None = None
    on_progress: Callable[[str], None] | None = None  # "compute: 16 of 40 shards"

    def tell(self, progress: str) -> None:
        if self.on_progress:
            self.on_progress(progress)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.on_stage:
            self.on_stage(name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


class BadEpochs(SnapshotError):
    """The epochs asked for are not a range of the season's epochs."""


@dataclass(frozen=True)
class RunOutcome:
    snapshot: SnapshotRecord
    created: bool  # False: the inputs are unchanged since `snapshot`, nothing was written


@dataclass(frozen=True)
class Computed:
    """A run's results before they are stored: its rows (in canonical order, a frame at a
    time, each call a new pass) and what is recorded of them."""

    rows: Callable[[], Iterable[pl.DataFrame]]
    summary: RowsSummary


def run_now(
    engine: Engine,
    policy: SeasonPolicy,
    *,
    by: str,
    reason: str,
    epochs: str | None,
    settlement: timedelta,
    lock_ttl: timedelta,
    clock: Callable[[], datetime],
    key: bytes,
    force: bool = False,
    stages: Stages | None = None,
    archive: HeartbeatArchive | None = None,
    plan: ComputePlan | None = None,
    keep: Path | None = None,
) -> RunOutcome:
    """The use case "run a draft now" (an admin, from any door): `epochs` as "a-b" or
    "a:b", both included, or every epoch that has closed and settled when None."""
    if epochs:
        try:
            chosen = parse_epoch_range(epochs, policy.epoch_count)
        except ValueError as exc:
            raise BadEpochs(str(exc)) from None
    else:
        chosen = settled_epochs(engine, policy, now=clock(), settlement=settlement)
    return run_snapshot(
        engine,
        policy,
        epochs=chosen,
        trigger="manual",
        triggered_by=by,
        reason=reason,
        clock=clock,
        lock_ttl=lock_ttl,
        key=key,
        force=force,
        stages=stages,
        archive=archive,
        plan=plan,
        keep=keep,
    )


def due_epochs(
    engine: Engine, policy: SeasonPolicy, *, now: datetime, settlement: timedelta
) -> range:
    """The epochs a scheduled snapshot should cover now; empty when none is due (nothing
    settled yet on the clock and the feed's watermark, or a snapshot from epoch 0 through
    the last settled epoch exists)."""
    settled = settled_epochs(engine, policy, now=now, settlement=settlement)
    if not settled or covering_snapshot(engine, policy.season_id, settled) is not None:
        return range(0)
    return settled


def run_due(
    engine: Engine,
    policy: SeasonPolicy,
    *,
    settlement: timedelta,
    lock_ttl: timedelta,
    clock: Callable[[], datetime],
    key: bytes,
    archive: HeartbeatArchive | None = None,
    plan: ComputePlan | None = None,
    keep: Path | None = None,
) -> RunOutcome | None:
    """The use case "run what is due" (the scheduler): a draft once a new epoch has closed
    and settled; None when nothing is due."""
    epochs = due_epochs(engine, policy, now=clock(), settlement=settlement)
    if not epochs:
        return None
    return run_snapshot(
        engine,
        policy,
        epochs=epochs,
        trigger="scheduled",
        triggered_by="scheduler",
        reason=f"epoch {epochs.stop - 1} closed and settled",
        clock=clock,
        lock_ttl=lock_ttl,
        key=key,
        archive=archive,
        plan=plan,
        keep=keep,
    )


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
    key: bytes,
    force: bool = False,
    stages: Stages | None = None,
    archive: HeartbeatArchive | None = None,
    plan: ComputePlan | None = None,
    keep: Path | None = None,
) -> RunOutcome:
    """Compute and store a draft snapshot of `epochs` (raises JobBusy, SnapshotError);
    `key` is the publication key the owners' commitments are made with (DESIGN 9), `keep`
    where its inputs are kept as fingerprinted, for its audit bundle (None: not kept).
    When the season's newest snapshot has the same inputs, policy, code and epochs, no new
    version is made unless `force`: the answer would be the same bytes.
    """
    if not epochs:
        raise SnapshotError(f"season {policy.season_id}: no epoch to snapshot yet")
    stages, plan = stages or Stages(), plan or ComputePlan()
    with (
        exclusive_run(
            engine,
            job_id=f"snapshot:{policy.season_id}",
            trigger=trigger,
            clock=clock,
            ttl=lock_ttl,
        ) as context,
        plan.work("rewards-snapshot-") as work,
        plan.executor() as executor,
    ):
        context.computed_on = executor.describe()
        with stages.stage("read inputs"):
            inputs = read_by_shard(engine, policy, work, plan, archive)
        with stages.stage("fingerprint"):
            prints = fingerprint_by_shard(inputs, policy, executor, stages.tell)
        identity = (prints, policy.policy_hash, code_version(), epochs.start, epochs.stop - 1)
        unchanged = _unchanged(engine, policy.season_id, identity)
        if unchanged is not None and not force:
            return RunOutcome(unchanged, created=False)
        if keep is not None:
            with stages.stage("keep inputs"):
                keep_inputs(keep, prints, inputs, policy.season_id)
        context.renew()
        with stages.stage("compute"):
            season = rows_by_shard(inputs, policy, epochs, executor, stages.tell)
        with stages.stage("canonical CSV and its hash"):
            summary = summarize_rows(
                season.rows_in_order(),
                epochs=epochs,
                pool_per_epoch=policy.pool_per_epoch,
                decimals=policy.token_decimals,
            )
        context.renew()
        with stages.stage("write"):
            header = _store(
                engine,
                policy,
                epochs,
                Computed(season.rows_in_order, summary),
                key=key,
                prints=prints,
                code=identity[2],
                trigger=trigger,
                triggered_by=triggered_by,
                reason=reason,
                context=context,
                now=clock(),
            )
        if keep is not None:  # under the season's lock: no other run keeps inputs now
            name = policy.season_id
            prune_kept(keep, name, still_needed(list_snapshots(engine, name)))
    return RunOutcome(header, created=True)


def _unchanged(
    engine: Engine, season: str, identity: tuple[str, str, str, int, int]
) -> SnapshotRecord | None:
    """The season's newest snapshot when it has exactly this identity (inputs, policy,
    code, epochs), else None."""
    with unit_of_work(engine) as session:
        newest = store.latest(session, season)
        if newest is None:
            return None
        same = (
            newest.input_fingerprint,
            newest.policy_hash,
            newest.code_version,
            newest.epoch_first,
            newest.epoch_last,
        )
        return record(newest) if same == identity else None


def _store(
    engine: Engine,
    policy: SeasonPolicy,
    epochs: range,
    computed: Computed,
    *,
    key: bytes,
    prints: str,
    code: str,
    trigger: str,
    triggered_by: str,
    reason: str,
    context: RunContext,
    now: datetime,
) -> SnapshotRecord:
    """Write the draft header, its rows, payouts and totals and the audit entry, in one
    transaction; the next version number is taken inside it."""
    season, summary = policy.season_id, computed.summary
    payouts = with_commitments(summary.suppliers, key, season)
    with unit_of_work(engine) as session:
        number = store.next_version(session, season)
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
            code_version=code,
            trigger=trigger,
            triggered_by=triggered_by,
            reason=reason,
            supersedes_id=previous.id if previous else None,
            device_epoch_rows=summary.rows,
            devices=summary.devices,
            suppliers=summary.suppliers.height,
            eligible_device_epochs=summary.eligible,
            total_pool=policy.pool_per_epoch * len(epochs),
            total_paid=int(summary.totals.get_column("paid").sum()),
            total_unassigned=int(summary.totals.get_column("unassigned").sum()),
            content_hash=summary.digest,
            merkle_root=merkle_root(payout_leaves(payouts, season, number)),
            leaf_format=LEAF_FORMAT,
            job_run_id=context.run_id,
            created_at=now,
        )
        # The snapshot records the log's head as its rows are written (DESIGN 9), read
        # without the appenders' lock; the run's own entry is chained last, so the lock
        # that every audited write waits on is held for an instant, not for the bulk
        # insert of a fleet's device-epochs.
        head = audit.current_head(session)
        header.audit_entries, header.audit_hash = head.entries, head.hash
        store.insert(session, header, computed.rows(), payouts, summary.totals)
        audit.append(
            session,
            now=now,
            actor=triggered_by,
            action="snapshot.run",
            subject=f"{season}-v{number}",
            details={
                "trigger": trigger,
                "reason": reason,
                "epochs": [epochs.start, epochs.stop - 1],
                "content_hash": summary.digest,
                "input_fingerprint": prints,
                "computed_on": context.computed_on,
            },
        )
        context.stored = summary.rows
        session.flush()
        return record(header)
