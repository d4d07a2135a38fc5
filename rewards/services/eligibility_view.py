"""Use cases for the eligibility view: rebuild a season's view; answer one supplier from it.

The view is what `GET /v1/supplier/eligibility` reads: the season's device-epochs so far,
computed by the same rules and from the same frozen inputs as a snapshot, with each
epoch's owner as of its start. Rebuilding takes the season's own lease and is skipped when
nothing it depends on changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from rewards.archive import HeartbeatArchive
from rewards.core import SeasonPolicy, started_epochs, to_us
from rewards.db import eligibility_views as store
from rewards.db.engine import unit_of_work
from rewards.db.tables import EligibilityView
from rewards.services.computing import (
    ComputePlan,
    fingerprint_by_shard,
    read_by_shard,
    rows_by_shard,
)
from rewards.services.errors import ServiceError
from rewards.services.runs import exclusive_run
from rewards.services.snapshot_runs import Stages, code_version
from rewards.view_shards import view_documents

ViewHeader = store.ViewHeader  # a view's header is a plain value: the doors may hold it
KEEP_VIEWS = 2  # the newest, and the one before it for requests that started on it


class ViewError(ServiceError, ValueError):
    """The view cannot be built or read; the message says why."""


@dataclass(frozen=True)
class ViewOutcome:
    view: ViewHeader
    created: bool  # False: nothing changed since `view`


def refresh_view(
    engine: Engine,
    policy: SeasonPolicy,
    *,
    trigger: str,
    clock: Callable[[], datetime],
    lock_ttl: timedelta,
    force: bool = False,
    stages: Stages | None = None,
    archive: HeartbeatArchive | None = None,
    plan: ComputePlan | None = None,
) -> ViewOutcome:
    """Rebuild the season's eligibility view as of now (raises JobBusy, ViewError), shard
    by shard as `plan` says (the same view whatever the plan)."""
    stages, plan = stages or Stages(), plan or ComputePlan()
    season = policy.season_id
    as_of = clock()
    epochs = started_epochs(policy, to_us(as_of))
    if not epochs:
        raise ViewError(f"season {season} has not started yet")
    with (
        exclusive_run(
            engine, job_id=f"eligibility-view:{season}", trigger=trigger, clock=clock, ttl=lock_ttl
        ) as context,
        plan.work("rewards-view-") as work,
        plan.executor() as executor,
    ):
        context.computed_on = executor.describe()
        with stages.stage("read inputs"):
            inputs = read_by_shard(engine, policy, work, plan, archive)
        with stages.stage("fingerprint"):
            prints = fingerprint_by_shard(inputs, policy, executor, stages.tell)
        identity = (prints, policy.policy_hash, code_version(), len(epochs), as_of >= policy.end)
        with engine.connect() as connection:
            newest = store.latest(connection, season)
        if newest is not None and not force:
            same = (
                newest.input_fingerprint,
                newest.policy_hash,
                newest.code_version,
                newest.epochs,
                newest.as_of >= policy.end,
            )
            if same == identity:
                return ViewOutcome(newest, created=False)
        context.renew()
        with stages.stage("compute"):
            rows = rows_by_shard(inputs, policy, epochs, executor, stages.tell)
        context.renew()
        with stages.stage("render documents"):
            documents = view_documents(
                rows, policy, to_us(as_of), executor=executor, progress=stages.tell
            )
        context.renew()
        with stages.stage("write"), unit_of_work(engine) as session:
            header = EligibilityView(
                season=season,
                as_of=as_of,
                epochs=len(epochs),
                input_fingerprint=prints,
                policy_hash=policy.policy_hash,
                code_version=identity[2],
                rows=documents.rows,
                owners=documents.owners,
                job_run_id=context.run_id,
                computed_at=clock(),
            )
            store.insert(session, header, documents.packed(), documents.packed_devices())
            store.prune(session, season, KEEP_VIEWS)
            context.stored = documents.rows
            made = ViewHeader(**header.model_dump())
    _headers.clear()  # this process reads the new view at once
    return ViewOutcome(made, created=True)


@dataclass(frozen=True)
class Standing:
    """One page of a supplier's device-epochs from a view."""

    view: ViewHeader
    document: bytes  # a JSON array of the API's device-epoch rows, by device then epoch
    rows: int
    next_after: tuple[str, int] | None  # the last row's key when more rows follow


HEADER_TTL_S = 1.0  # a rebuilt view is read by all requests within a second
_headers: dict[tuple[int, str], tuple[float, ViewHeader]] = {}


def _latest(engine: Engine, connection: Connection, season: str) -> ViewHeader | None:
    """The season's newest view header, re-read at most once a second per process (the
    previous view stays in the database, so a request still on it reads it whole)."""
    key = (id(engine), season)
    cached = _headers.get(key)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return cached[1]
    view = store.latest(connection, season)
    if view is not None:
        _headers[key] = (now + HEADER_TTL_S, view)
    return view


def supplier_standing(
    engine: Engine,
    season: str,
    owner_id: str,
    *,
    limit: int,
    device_id: str | None = None,
    epoch: int | None = None,
    after: tuple[str, int] | None = None,
) -> Standing | None:
    """`owner_id`'s device-epochs in the season's newest view (None: no view built yet),
    optionally one device's or one epoch's, `limit` at a time after the key `after`.

    The whole stored document is the answer when it fits the page unfiltered (the usual
    request: all my device-epochs); otherwise it is parsed, filtered and cut here."""
    with engine.connect() as connection:
        view = _latest(engine, connection, season)
        if view is None:
            return None
        count, document = store.read_document(connection, view.id, owner_id)
    if device_id is None and epoch is None and after is None and count <= limit:
        return Standing(view, document, count, None)
    rows = [
        r
        for r in orjson.loads(document)
        if (device_id is None or r["device_id"] == device_id)
        and (epoch is None or r["epoch"] == epoch)
        and (after is None or (r["device_id"], r["epoch"]) > after)
    ]
    page = rows[:limit]
    last = (page[-1]["device_id"], page[-1]["epoch"]) if len(rows) > limit else None
    return Standing(view, orjson.dumps(page), len(page), last)


@dataclass(frozen=True)
class Grid:
    """A supplier's devices in a view with a letter per begun epoch (GRID_LETTERS, or
    NOT_OWNED), by device_id: what their grid draws and counts."""

    view: ViewHeader
    devices: list[tuple[str, str]]


def supplier_grid(engine: Engine, season: str, owner_id: str) -> Grid | None:
    """`owner_id`'s grid in the season's newest view (None: no view built yet)."""
    with engine.connect() as connection:
        view = _latest(engine, connection, season)
        if view is None:
            return None
        return Grid(view, store.device_states(connection, view.id, owner_id))


def device_standing(
    engine: Engine, season: str, owner_id: str, device_id: str
) -> tuple[ViewHeader, list[dict[str, Any]]] | None:
    """The view and `device_id`'s rows in it while `owner_id` had it (no rows: never
    theirs); None while no view is built."""
    with engine.connect() as connection:
        view = _latest(engine, connection, season)
        if view is None:
            return None
        found = store.read_device_document(connection, view.id, owner_id, device_id)
    return view, orjson.loads(found) if found is not None else []


def page_json(standing: Standing) -> bytes:
    """The page as the API's EligibilityPage JSON, around the stored document bytes."""
    cursor = f"{standing.next_after[0]}/{standing.next_after[1]}" if standing.next_after else None
    head = orjson.dumps(
        {"season": standing.view.season, "as_of": standing.view.as_of, "next_after": cursor},
        option=orjson.OPT_UTC_Z,
    )
    return head[:-1] + b',"device_epochs":' + standing.document + b"}"
