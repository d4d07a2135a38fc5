"""Reading snapshots (DESIGN 5): name, find, list, the stored rows, diffs, finance's
adjustments and a supplier's Merkle proof.

Running a snapshot is in `snapshot_runs`, publishing in `publication`, the finance export in
`exports`. Every function here returns plain records (`SnapshotRecord`) or polars frames.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import polars as pl
from sqlalchemy import Engine

from rewards.core import (
    LEAF_FORMAT,
    SNAPSHOT_ROWS,
    DiffSummary,
    adjustments,
    commitment,
    diff_rows,
    diff_suppliers,
    epoch_days,
    owner_salt,
    parse_policy,
    payout_leaves,
    proof_document,
    reward_decimal,
    summarize,
)
from rewards.db import snapshots as store
from rewards.db.engine import unit_of_work
from rewards.db.tables import Snapshot
from rewards.services.errors import ServiceError
from rewards.services.records import SnapshotRecord


class SnapshotError(ServiceError, ValueError):
    """A snapshot request cannot be done as asked; the message says why."""


class SnapshotNotFound(SnapshotError):
    """The request names a snapshot that is not stored."""

    kind = "not-found"


class SnapshotConflict(SnapshotError):
    """The snapshot's stored state does not allow the request (not a draft, another
    season, changed meanwhile, or content that does not match its hashes)."""

    kind = "conflict"


def label(snapshot: SnapshotRecord) -> str:
    """How people name a snapshot: <season>-v<version>."""
    return f"{snapshot.season}-v{snapshot.version}"


def record(row: Snapshot) -> SnapshotRecord:
    return SnapshotRecord.of(row)


_REF = re.compile(r"(?:(?P<season>.+)-)?v(?P<version>\d+)|(?P<bare>\d+)")


def resolve(engine: Engine, ref: str, default_season: str) -> SnapshotRecord:
    """The snapshot named `ref`: 'ignition-s2-v3', 'v3' or '3' (of the default season)."""
    match = _REF.fullmatch(ref.strip())
    if not match:
        raise SnapshotNotFound(f"snapshot {ref!r}: expected SEASON-vN, vN or N")
    season = match.group("season") or default_season
    number = int(match.group("version") or match.group("bare"))
    with unit_of_work(engine) as session:
        found = store.find(session, season, number)
        if found is None:
            raise SnapshotNotFound(f"no snapshot {season}-v{number}")
        return record(found)


def current(engine: Engine, snapshot: SnapshotRecord) -> SnapshotRecord:
    """`snapshot` as stored now (its status may have changed since it was read)."""
    with unit_of_work(engine) as session:
        found = session.get(Snapshot, snapshot.id)
        if found is None:
            raise SnapshotNotFound(f"{label(snapshot)} no longer exists")
        return record(found)


def covering_snapshot(engine: Engine, season: str, epochs: range) -> SnapshotRecord | None:
    """The newest snapshot of `season` that covers all of `epochs`, if any."""
    with unit_of_work(engine) as session:
        for snap in store.listing(session, season):
            if snap.epoch_first <= epochs.start and snap.epoch_last >= epochs.stop - 1:
                return record(snap)
    return None


def list_snapshots(engine: Engine, season: str | None = None) -> list[SnapshotRecord]:
    """Snapshots, newest first, optionally of one season."""
    with unit_of_work(engine) as session:
        return [record(s) for s in store.listing(session, season)]


def policy_of(snapshot: SnapshotRecord) -> dict[str, Any]:
    """The canonical policy the snapshot was computed with."""
    policy: dict[str, Any] = json.loads(snapshot.policy)
    return policy


def token_decimals(snapshot: SnapshotRecord) -> int:
    return int(policy_of(snapshot)["token_decimals"])


def epoch_days_of(snapshot: SnapshotRecord) -> pl.Expr:
    """The UTC day of each row's epoch under the snapshot's own policy."""
    policy = parse_policy(policy_of(snapshot))
    return epoch_days(policy.start, policy.epoch_length_us)


def stored_rows(engine: Engine, snapshot: SnapshotRecord) -> pl.DataFrame:
    """The snapshot's device-epoch rows (SNAPSHOT_ROWS), in canonical order."""
    with engine.connect() as connection:
        try:
            return store.read_rows(connection, snapshot.id)
        except store.CorruptSnapshot as exc:
            raise SnapshotConflict(f"{label(snapshot)}: {exc}") from None


def stored_row_parts(engine: Engine, snapshot: SnapshotRecord) -> Iterator[pl.DataFrame]:
    """The snapshot's device-epoch rows (SNAPSHOT_ROWS) in canonical order, a stored part
    at a time: what streams a fleet's snapshot without holding it."""
    with engine.connect() as connection:
        try:
            yield from store.row_parts(connection, snapshot.id)
        except store.CorruptSnapshot as exc:
            raise SnapshotConflict(f"{label(snapshot)}: {exc}") from None


def stored_suppliers(engine: Engine, snapshot: SnapshotRecord) -> pl.DataFrame:
    """SUPPLIERS of the snapshot, with each leaf's `commitment` when its leaves name them
    (format 2; `payout_leaves` then uses it)."""
    with engine.connect() as connection:
        found = store.read_suppliers(connection, snapshot.id)
    return found if snapshot.leaf_format >= LEAF_FORMAT else found.drop("commitment")


def stored_epochs(engine: Engine, snapshot: SnapshotRecord) -> pl.DataFrame:
    with engine.connect() as connection:
        return store.read_epochs(connection, snapshot.id)


@dataclass(frozen=True)
class Diff:
    before: SnapshotRecord
    after: SnapshotRecord
    rows: pl.DataFrame  # per device-epoch that changed
    suppliers: pl.DataFrame  # per supplier whose reward changed
    summary: DiffSummary


DIFFS_KEPT = 4  # per process: a diff's pages, its CSV and the publish preview reuse it
_diffs: OrderedDict[tuple[int, str, str, int, str, str], Diff] = OrderedDict()
_diffs_lock = threading.Lock()


def diff(engine: Engine, before: SnapshotRecord, after: SnapshotRecord) -> Diff:
    """What changed from `before` to `after` (two snapshots of one season). A snapshot's
    content never changes, so the last few diffs are kept, keyed by each snapshot's id,
    content hash and Merkle root (a discarded draft's id, reused, has other content)."""
    if before.season != after.season:
        raise SnapshotConflict(
            f"{label(before)} and {label(after)} are of different seasons: nothing to compare"
        )
    key = (
        before.id, before.content_hash, before.merkle_root,
        after.id, after.content_hash, after.merkle_root,
    )  # fmt: skip
    with _diffs_lock:
        found = _diffs.get(key)
        if found is not None:
            _diffs.move_to_end(key)
            return replace(found, before=before, after=after)
    rows = diff_rows(stored_rows(engine, before), stored_rows(engine, after))
    suppliers = diff_suppliers(stored_suppliers(engine, before), stored_suppliers(engine, after))
    made = Diff(before, after, rows, suppliers, summarize(rows, suppliers))
    with _diffs_lock:
        _diffs[key] = made
        while len(_diffs) > DIFFS_KEPT:
            _diffs.popitem(last=False)
    return made


def compare(engine: Engine, before: str, after: str, season: str) -> Diff:
    """The use case "what changed between these two snapshots", by their refs (names of
    `season` unless they say another)."""
    return diff(engine, resolve(engine, before, season), resolve(engine, after, season))


def since_previous(engine: Engine, snapshot: SnapshotRecord) -> Diff | None:
    """What changed from the version made before `snapshot` (None for the first)."""
    earlier = [s for s in list_snapshots(engine, snapshot.season) if s.version < snapshot.version]
    return diff(engine, earlier[0], snapshot) if earlier else None


def settle(engine: Engine, paid: SnapshotRecord, due: SnapshotRecord) -> pl.DataFrame:
    """Finance's adjustments when published `due` replaces published `paid`."""
    for snapshot in (paid, due):
        if snapshot.status == "draft":
            raise SnapshotConflict(
                f"{label(snapshot)} is a draft: adjustments are between published snapshots"
            )
    if paid.season != due.season:
        raise SnapshotConflict(f"{label(paid)} and {label(due)} are of different seasons")
    if paid.id == due.id:
        raise SnapshotError(f"{label(paid)} against itself: nothing to settle; give two versions")
    return adjustments(stored_suppliers(engine, paid), stored_suppliers(engine, due))


def settlement(engine: Engine, paid: str, due: str, season: str) -> pl.DataFrame:
    """The use case "what finance owes or overpaid when `due` replaces `paid`", by refs."""
    return settle(engine, resolve(engine, paid, season), resolve(engine, due, season))


class WrongKey(SnapshotError):
    """The publication key is not the one a snapshot's commitments were made with."""

    kind = "unavailable"


def proof(engine: Engine, snapshot: SnapshotRecord, owner_id: str, key: bytes) -> dict[str, Any]:
    """The Merkle proof of `owner_id`'s payout in `snapshot` (SnapshotNotFound if none):
    in leaf format 2 with their owner_id and secret salt (derived from the publication
    `key`), so that they, and only they, can show the leaf is theirs."""
    snapshot = current(engine, snapshot)
    suppliers = stored_suppliers(engine, snapshot)
    leaves = payout_leaves(suppliers, snapshot.season, snapshot.version)
    salt = owner_salt(key, snapshot.season, owner_id)
    try:
        if "commitment" in suppliers.columns:
            holder = commitment(salt, owner_id)
            stored = suppliers.filter(pl.col("owner_id") == owner_id).get_column("commitment")
            if stored.len() and stored.item() != holder:
                raise WrongKey(
                    f"{label(snapshot)} was made with another publication key than this "
                    "engine's: its owners' salts cannot be given out"
                )
            document = proof_document(leaves, holder, owner_id=owner_id, salt=salt)
        else:  # leaf format 1: the leaf names the owner
            document = proof_document(leaves, owner_id)
    except KeyError:
        raise SnapshotNotFound(
            f"{label(snapshot)} has no payout for supplier {owner_id!r}"
        ) from None
    amount = pl.DataFrame({"a": [document["leaf"][3]]}, schema={"a": pl.Int64})
    return {
        "snapshot": label(snapshot),
        "status": snapshot.status,
        "amount_decimal": amount.select(reward_decimal("a", token_decimals(snapshot))).item(),
        **document,
    }


def root_of_record(engine: Engine, leaf: Any) -> SnapshotRecord:
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
            raise SnapshotNotFound(f"the engine has no snapshot {season}-v{number}")
        snapshot = record(found)
    if snapshot.status == "draft":
        raise SnapshotConflict(f"{label(snapshot)} is a draft: its root was never published")
    return snapshot


@dataclass(frozen=True)
class PublishedStanding:
    """What the season's published snapshot pays a supplier: the snapshot, their payout
    (None: it pays them nothing), and for a device asked, its rows there while it was
    theirs (SNAPSHOT_ROWS), with each reward in tokens (`reward_decimal`)."""

    snapshot: SnapshotRecord
    payout: dict[str, Any] | None
    device_rows: pl.DataFrame


def published_device(
    engine: Engine, season: str, device_id: str
) -> tuple[SnapshotRecord, pl.DataFrame] | None:
    """The season's published snapshot and `device_id`'s rows in it (SNAPSHOT_ROWS, with
    `reward_decimal`), whoever owned it; None while nothing is published."""
    with unit_of_work(engine) as session:
        found = store.published(session, season)
        if found is None:
            return None
        snapshot = record(found)
        rows = store.device_rows(session.connection(), snapshot.id, device_id)
    decimals = token_decimals(snapshot)
    return snapshot, rows.with_columns(reward_decimal("reward", decimals).alias("reward_decimal"))


def published_standing(
    engine: Engine, season: str, owner_id: str, device_id: str | None = None
) -> PublishedStanding | None:
    """The published snapshot's word on `owner_id` (and one of their devices), or None
    while nothing is published: what they are paid, as opposed to the season-so-far view."""
    with unit_of_work(engine) as session:
        found = store.published(session, season)
        if found is None:
            return None
        snapshot = record(found)
        connection = session.connection()
        payout = store.payout_of(connection, snapshot.id, owner_id)
        rows = pl.DataFrame(schema=dict(SNAPSHOT_ROWS))
        if device_id is not None:
            rows = store.device_rows(connection, snapshot.id, device_id)
    decimals = token_decimals(snapshot)
    if payout is not None:
        amount = pl.DataFrame({"a": [payout["reward"]]}, schema={"a": pl.Int64})
        payout["reward_decimal"] = amount.select(reward_decimal("a", decimals)).item()
    mine = rows.filter(pl.col("owner_id") == owner_id)
    return PublishedStanding(
        snapshot,
        payout,
        mine.with_columns(reward_decimal("reward", decimals).alias("reward_decimal")),
    )
