"""A diff is computed once and reused by its pages, CSV and the publish preview (a
snapshot's content never changes); a snapshot with the same id but other content (a
discarded draft's id reused) is never answered from the cache."""

from __future__ import annotations

import dataclasses

import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine

from rewards.core import DetectorSettings
from rewards.services import snapshots
from rewards.services.incidents import decide, detect
from tests.seeded import NOW, POLICY
from tests.services.test_snapshots import run


def test_a_diff_is_reused_until_a_snapshot_differs(
    ingested: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = run(ingested).snapshot
    drop = next(p.id for p in detect(ingested, POLICY, now=NOW, settings=DetectorSettings()))
    decide(ingested, drop, status="confirmed", by="admin@test", now=NOW)
    v2 = run(ingested).snapshot
    reads: list[int] = []
    real = snapshots.stored_rows
    monkeypatch.setattr(snapshots, "stored_rows", lambda e, s: reads.append(s.id) or real(e, s))
    snapshots._diffs.clear()
    first = snapshots.diff(ingested, v1, v2)
    again = snapshots.diff(ingested, v1, v2)
    assert reads == [v1.id, v2.id]  # read once
    assert_frame_equal(first.rows, again.rows) and first.summary == again.summary
    assert first.rows.height > 0
    other = dataclasses.replace(v2, content_hash="0" * 64)  # same id, other content
    snapshots.diff(ingested, v1, other)
    assert reads == [v1.id, v2.id, v1.id, v2.id]
    for n in range(snapshots.DIFFS_KEPT + 1):  # bounded
        snapshots.diff(ingested, v1, dataclasses.replace(v2, merkle_root=str(n)))
    assert len(snapshots._diffs) == snapshots.DIFFS_KEPT
