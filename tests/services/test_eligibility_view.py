"""The eligibility view over a real database (both dialects): each supplier reads exactly
the device-epochs a snapshot of the same inputs holds for them, page by page; rebuilding is
skipped when nothing changed and sees a confirmed incident; a tampered part is caught."""

from __future__ import annotations

import json
from datetime import timedelta

import polars as pl
import pytest
from sqlalchemy import Engine, text

from jobs.snapshots import view_job
from rewards.db.eligibility_views import CorruptView
from rewards.services.computing import ComputePlan
from rewards.services.eligibility_view import (
    KEEP_VIEWS,
    ViewOutcome,
    refresh_view,
    supplier_standing,
)
from rewards.services.snapshot_runs import run_snapshot
from rewards.services.snapshots import stored_rows
from rewards.settings import get_settings
from tests.seeded import KEY, NOW, POLICY, declare_forced_upgrade

LOCK = timedelta(minutes=5)
SCHEMA = {"crediting_incidents": pl.List(pl.String()), "epoch_start": pl.String()}


def refresh(engine: Engine, **kw: object) -> ViewOutcome:
    return refresh_view(engine, POLICY, trigger="test", clock=lambda: NOW, lock_ttl=LOCK, **kw)  # type: ignore[arg-type]


def everything(engine: Engine, owner: str, page: int) -> pl.DataFrame:
    """All of `owner`'s rows, read `page` at a time by following the cursor."""
    frames, after = [], None
    while True:
        standing = supplier_standing(engine, POLICY.season_id, owner, limit=page, after=after)
        assert standing is not None
        rows = json.loads(standing.document)
        assert len(rows) == standing.rows <= page
        frames.append(pl.DataFrame(rows, schema_overrides=SCHEMA))
        if standing.next_after is None:
            return pl.concat(frames)
        after = standing.next_after


def owners(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT DISTINCT owner_id FROM device_metadata ORDER BY owner_id")
            ).scalars()
        )


def test_each_supplier_reads_what_a_snapshot_of_the_same_inputs_says(ingested: Engine) -> None:
    assert supplier_standing(ingested, POLICY.season_id, "owner-00000", limit=10) is None
    view = refresh(ingested).view
    assert view.epochs == 12  # 20 April to 1 May have begun
    snap = run_snapshot(
        ingested,
        POLICY,
        epochs=range(12),
        trigger="manual",
        triggered_by="t",
        reason="t",
        clock=lambda: NOW,
        key=KEY,
        lock_ttl=LOCK,
    ).snapshot
    expected = stored_rows(ingested, snap).filter(pl.col("owner_id").is_not_null())
    seen = 0
    for owner in owners(ingested):
        mine = everything(ingested, owner, page=7)
        theirs = expected.filter(owner_id=owner).sort("device_id", "epoch")
        same = [c for c in theirs.columns if c not in ("reward", "epoch_start", "owner_id")]
        assert (
            mine.with_columns(pl.col("crediting_incidents").list.join(";").replace("", None))
            .select(same)
            .equals(theirs.select(same))
        ), owner
        assert mine.get_column("epoch_start").to_list() == [
            f"{t:%Y-%m-%dT%H:%M:%SZ}" for t in theirs.get_column("epoch_start")
        ]
        assert mine.get_column("in_progress").to_list() == [e == 11 for e in mine["epoch"]]
        seen += mine.height
    assert seen == expected.height == view.rows


def documents(engine: Engine, view_id: int) -> list[tuple[str, int, str, bytes]]:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT owner_id, rows, sha256, document FROM eligibility_documents "
                "WHERE view_id = :id ORDER BY owner_id"
            ),
            {"id": view_id},
        )
        return [(o, r, h, bytes(d)) for o, r, h, d in found]


def test_any_compute_plan_builds_the_same_documents(ingested: Engine) -> None:
    """One shard, or many spread over two worker processes (a supplier's devices in
    several of them): every owner's document is the same bytes, and so is the header."""
    declare_forced_upgrade(ingested)
    first = refresh(ingested).view
    expected = documents(ingested, first.id)
    assert len(expected) == first.owners > 5
    for plan in (ComputePlan(shard_devices=3), ComputePlan(shard_devices=7, workers=2)):
        again = refresh(ingested, force=True, plan=plan).view
        assert (again.rows, again.owners, again.input_fingerprint) == (
            first.rows,
            first.owners,
            first.input_fingerprint,
        )
        assert documents(ingested, again.id) == expected


def test_filters_by_device_and_epoch_never_cross_owners(ingested: Engine) -> None:
    refresh(ingested)
    alice, bob = owners(ingested)[:2]
    bobs = everything(ingested, bob, page=500).get_column("device_id").unique().to_list()
    for device in bobs:
        standing = supplier_standing(ingested, POLICY.season_id, alice, limit=500, device_id=device)
        assert standing is not None and json.loads(standing.document) == []
        own = supplier_standing(ingested, POLICY.season_id, bob, limit=500, device_id=device)
        assert own is not None and own.rows > 0
        assert {r["device_id"] for r in json.loads(own.document)} == {device}
    one = supplier_standing(ingested, POLICY.season_id, bob, limit=500, epoch=3)
    assert one is not None and {r["epoch"] for r in json.loads(one.document)} == {3}


def test_rebuild_is_skipped_until_an_input_changes_and_old_views_are_pruned(
    ingested: Engine,
) -> None:
    first = refresh(ingested)
    again = refresh(ingested)
    assert first.created and not again.created and again.view.id == first.view.id
    declare_forced_upgrade(ingested)
    after = refresh(ingested)
    assert after.created and after.view.input_fingerprint != first.view.input_fingerprint
    credited = pl.concat([everything(ingested, o, page=500) for o in owners(ingested)]).filter(
        pl.col("credited_s") > 0
    )
    assert not credited.is_empty()
    assert set(credited.get_column("crediting_incidents").list.join(";")) == {"apr-25"}
    said = credited.filter(pl.col("reason") != "SUSPENDED").get_column("explanation")
    odd = [w for w in said if "credited by incident apr-25" not in w]
    assert not odd, odd[:3]
    assert set(credited.get_column("epoch")) <= {5, 6, 7}
    refresh(ingested, force=True)
    with ingested.connect() as connection:
        assert (
            connection.execute(text("SELECT count(*) FROM eligibility_views")).scalar()
            == KEEP_VIEWS
        )


def test_a_tampered_part_is_refused(ingested: Engine) -> None:
    refresh(ingested)
    owner = owners(ingested)[0]
    with ingested.begin() as connection:
        connection.execute(text("UPDATE eligibility_documents SET sha256 = :h"), {"h": "0" * 64})
    with pytest.raises(CorruptView):
        supplier_standing(ingested, POLICY.season_id, owner, limit=10)


def test_the_scheduled_job_rebuilds_only_when_something_changed(ingested: Engine) -> None:
    moment = {"now": POLICY.start - timedelta(hours=1)}
    job = view_job(ingested, get_settings(), POLICY, clock=lambda: moment["now"])
    assert job() is None  # the season has not begun
    moment["now"] = NOW
    first = job()
    assert first is not None and first.epochs == 12
    assert job().id == first.id  # type: ignore[union-attr]
    moment["now"] = NOW + timedelta(days=1)  # a new epoch began
    later = job()
    assert later is not None and later.id != first.id and later.epochs == 13
