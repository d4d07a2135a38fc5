"""The impact preview of an incident decision (issue 17, item 4) says exactly what the
rerun after the decision will change: the same changed device-epochs, suppliers and base
units as the diff of the real snapshots made before and after it, for a confirm, an edit
and an un-confirm; and it writes nothing."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine, text

from rewards.core import DetectorSettings
from rewards.services import impact as impact_module
from rewards.services.impact import impact
from rewards.services.incidents import IncidentError, UnknownIncident, decide, detect
from rewards.services.snapshots import diff, stored_epochs
from tests.seeded import NOW, POLICY
from tests.services.test_snapshots import run


def _proposed_drop(engine: Engine) -> str:
    found = detect(engine, POLICY, now=NOW, settings=DetectorSettings())
    return next(p.id for p in found if p.source == "detector:fleet-drop")


def _agrees(engine: Engine, preview, before, after) -> None:  # type: ignore[no-untyped-def]
    real = diff(engine, before, after)
    assert real.rows.height > 0  # the decision matters in this fleet
    assert_frame_equal(preview.rows, real.rows)
    # the same suppliers and changes; their totals in the preview are of its days only
    assert_frame_equal(
        preview.suppliers.select("owner_id", "delta"), real.suppliers.select("owner_id", "delta")
    )
    assert preview.summary.moved == real.summary.moved
    assert preview.summary.device_epochs_regained == real.summary.device_epochs_regained
    assert preview.summary.devices_changed == real.summary.devices_changed
    shown = preview.per_day
    assert set(real.rows["epoch"]) <= set(preview.epochs)
    for side, snap in (("eligible_before", before), ("eligible_after", after)):
        counts = dict(stored_epochs(engine, snap).select("epoch", "eligible_devices").iter_rows())
        days = dict(shown.select("epoch", side).iter_rows())
        assert {e: days[e] for e in preview.epochs if e in counts} == {
            e: counts[e] for e in preview.epochs if e in counts
        }
    assert shown["regained"].sum() == real.summary.device_epochs_regained
    assert shown["moved"].sum() == real.rows["delta"].clip(lower_bound=0).sum()


def test_the_preview_of_confirm_edit_and_unconfirm_is_what_the_rerun_changes(
    ingested: Engine,
) -> None:
    drop = _proposed_drop(ingested)
    v1 = run(ingested).snapshot
    seen = impact(ingested, POLICY, drop, "confirm")
    decide(ingested, drop, status="confirmed", by="admin@test", now=NOW)
    v2 = run(ingested).snapshot
    _agrees(ingested, seen, v1, v2)
    assert seen.summary.device_epochs_regained > 0 and seen.summary.moved > 0

    shorter = {"recovery_deadline": timedelta(minutes=30)}
    seen = impact(ingested, POLICY, drop, "edit", edits=shorter)
    decide(ingested, drop, status=None, by="admin@test", now=NOW, changes=shorter)
    v3 = run(ingested).snapshot
    _agrees(ingested, seen, v2, v3)

    seen = impact(ingested, POLICY, drop, "unconfirm")
    decide(ingested, drop, status="proposed", by="admin@test", now=NOW)
    v4 = run(ingested).snapshot
    _agrees(ingested, seen, v3, v4)
    assert v4.content_hash == v1.content_hash


def _counts(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as connection:
        return tuple(
            connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
            for table in ("snapshots", "job_runs", "audit_log", "incidents")
        )


def test_a_preview_writes_nothing_and_refuses_what_the_decision_would(ingested: Engine) -> None:
    drop = _proposed_drop(ingested)
    before = _counts(ingested)
    status = ingested.connect().execute(
        text("SELECT status FROM incidents WHERE id = :i"), {"i": drop}
    )
    assert status.scalar_one() == "proposed"
    impact(ingested, POLICY, drop, "confirm")
    assert _counts(ingested) == before
    with pytest.raises(UnknownIncident):
        impact(ingested, POLICY, "no-such-incident", "confirm")
    with pytest.raises(IncidentError, match="unknown change"):
        impact(ingested, POLICY, drop, "delete")
    with pytest.raises(IncidentError, match="end must be after start"):
        impact(ingested, POLICY, drop, "edit", edits={"end": POLICY.start})
    with pytest.raises(IncidentError, match="cannot be edited"):
        impact(ingested, POLICY, drop, "edit", edits={"status": "confirmed"})
    assert _counts(ingested) == before


def test_a_decision_that_changes_nothing_previews_nothing(ingested: Engine) -> None:
    drop = _proposed_drop(ingested)
    seen = impact(ingested, POLICY, drop, "edit", edits={"reason": "just the words"})
    assert seen.rows.is_empty() and seen.suppliers.is_empty()
    assert seen.summary.moved == 0
    assert seen.per_day.filter(pl.col("eligible_before") != pl.col("eligible_after")).is_empty()


def test_a_preview_is_reused_until_an_input_may_have_changed(
    ingested: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its pages and CSV reuse a preview; any decision (the audit log moves), ingested page
    or job run makes it be computed again."""
    drop = _proposed_drop(ingested)
    reads: list[int] = []
    real = impact_module.intervals_overlapping
    monkeypatch.setattr(
        impact_module, "intervals_overlapping", lambda c, **kw: reads.append(1) or real(c, **kw)
    )
    first = impact(ingested, POLICY, drop, "confirm")
    assert impact(ingested, POLICY, drop, "confirm") is first and len(reads) == 1
    other = impact(ingested, POLICY, drop, "edit", edits={"reason": "words"})
    assert other is not first and len(reads) == 2
    decide(ingested, drop, status=None, by="admin@test", now=NOW, changes={"reason": "new words"})
    again = impact(ingested, POLICY, drop, "confirm")
    assert again is not first and len(reads) == 3
    assert_frame_equal(again.rows, first.rows)  # the words changed nothing else
