"""Ingest archives every page before it commits (DESIGN 8): a crash between the archive
write and the database commit, or in the middle of the commit, neither loses nor doubles a
heartbeat in the archive or the database; on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from sqlalchemy import Engine

from rewards.archive import HeartbeatArchive
from rewards.core import online_intervals, to_us
from rewards.db import state
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import load_heartbeats, take_intervals_overlapping
from rewards.db.interval_reads import load_intervals
from rewards.services import ingest
from rewards.services.eligibility import compute_from_files
from rewards.services.ingest import IngestReport, pull_stream
from rewards.services.intervals import BadDays, rebuild_intervals
from rewards.sim.fleet import FleetSpec, delivered_heartbeats
from rewards.sim.server import BackgroundServer, UptimeSimulator, create_sim_app
from rewards.uptime.client import RetryPolicy, UptimeClient
from tests.builders import policy

P = policy()
NOW = datetime(2024, 5, 1, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.005)
SPEC = FleetSpec(
    seed=11, devices=12, days=2, duplicate_rate=0.05, conflict_rate=0.02, late_rate=0.05
)


class Crash(RuntimeError):
    """The process died here."""


def pull(
    engine: Engine, url: str, archive: HeartbeatArchive, window: timedelta | None = None
) -> IngestReport:
    """Pull the heartbeats into `engine` and `archive`; with `window`, the database keeps
    only raw heartbeats that recent."""
    with UptimeClient(url, "secret", retry=FAST) as client:
        return pull_stream(
            engine=engine,
            client=client,
            stream="heartbeats",
            policy=P,
            page_size=700,
            max_skew=timedelta(minutes=5),
            clock=lambda: NOW,
            archive=archive,
            db_window=window,
        )


def crash_once(monkeypatch: pytest.MonkeyPatch, where: str, at_call: int) -> None:
    """Make the `at_call`-th page die `where`: after its archive write, before the database
    transaction ("before-commit"), or inside it, after the rows and before the cursor
    ("mid-commit")."""
    target, name = (ingest, "_store") if where == "before-commit" else (state, "set_cursor")
    original = getattr(target, name)
    calls = {"n": 0}

    def dying(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == at_call:
            raise Crash(f"{where} at page {at_call}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, dying)


@pytest.mark.parametrize("where", ["before-commit", "mid-commit"])
@pytest.mark.parametrize("at_call", [1, 3, 6])
def test_a_crash_at_any_point_of_a_page_neither_loses_nor_doubles_a_heartbeat(
    engine: Engine,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    at_call: int,
) -> None:
    sim = UptimeSimulator(SPEC, token="secret")
    archive = HeartbeatArchive(str(tmp_path / "archive"))
    with BackgroundServer(create_sim_app(sim)) as server:
        with monkeypatch.context() as patched:
            crash_once(patched, where, at_call)
            with pytest.raises(Crash):
                pull(engine, server.url, archive)
        report = pull(engine, server.url, archive)  # the restart goes on from the cursor
    assert report.caught_up and report.error is None
    truth = delivered_heartbeats(sim.heartbeats)
    with unit_of_work(engine) as session:
        stored = load_heartbeats(session.connection())
        intervals = load_intervals(session.connection())
        pages = state.committed_pages(session, "heartbeats")
    assert stored.equals(truth)
    assert intervals.equals(online_intervals(truth, P))
    assert archive.heartbeats().equals(truth)
    raw = archive.scan().collect()
    # every page archived exactly once, under the sequence number it committed with
    assert raw.get_column("page").max() == pages == archive.archived_page("heartbeats")
    delivered = sim.heartbeats.filter(pl.col("raw").is_null())
    assert raw.height == delivered.height  # each delivery archived once: none lost or doubled


def test_intervals_rebuilt_from_the_archive_equal_those_kept_page_by_page(
    engine: Engine, tmp_path: Any
) -> None:
    sim = UptimeSimulator(SPEC, token="secret")
    archive = HeartbeatArchive(str(tmp_path / "archive"))
    with BackgroundServer(create_sim_app(sim)) as server:
        assert pull(engine, server.url, archive).caught_up
    with unit_of_work(engine) as session:
        kept = load_intervals(session.connection())
    days = []
    assert rebuild_intervals(engine, archive, P, on_day=lambda d, n: days.append(d)) == kept.height
    assert days == sorted(days) and len(days) >= SPEC.days
    with unit_of_work(engine) as session:
        assert load_intervals(session.connection()).equals(kept)
    # after a change of the liveness timeout: what the rules give over every heartbeat
    longer = policy(liveness_timeout="30m")
    rebuild_intervals(engine, archive, longer)
    truth = delivered_heartbeats(sim.heartbeats)
    with unit_of_work(engine) as session:
        rebuilt = load_intervals(session.connection())
    assert rebuilt.equals(online_intervals(truth, longer))
    assert rebuilt.height < kept.height  # the longer timeout bridges gaps the shorter did not


@pytest.mark.parametrize("dialect", ["sqlite"])  # the archive is the input here, not the database
def test_eligibility_from_the_archive_equals_eligibility_from_the_files(
    engine: Engine, tmp_path: Any
) -> None:
    sim = UptimeSimulator(SPEC, token="secret")
    url = str(tmp_path / "archive")
    with BackgroundServer(create_sim_app(sim)) as server:
        assert pull(engine, server.url, HeartbeatArchive(url)).caught_up
    truth = tmp_path / "truth.parquet"
    delivered_heartbeats(sim.heartbeats).write_parquet(truth)
    from_archive, paid_archive = compute_from_files(P, heartbeats=url)
    from_file, paid_file = compute_from_files(P, heartbeats=truth)
    assert from_archive.equals(from_file) and paid_archive.equals(paid_file)
    assert int(from_file.get_column("eligible").sum()) > 0


def test_a_page_whose_archive_write_fails_is_not_committed(
    engine: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive write runs beside the page's transaction; the transaction commits only
    after the write has, so a failed write leaves the page uncommitted, and the rerun
    archives and commits it once."""
    sim = UptimeSimulator(SPEC, token="secret")
    archive = HeartbeatArchive(str(tmp_path / "archive"))
    original = archive.put_page

    def failing(heartbeats: pl.DataFrame, *, stream: str, page: int) -> int:
        if page == 3:
            time.sleep(0.2)  # slower than the transaction: it must wait, not commit
            raise OSError("object storage unreachable")
        return original(heartbeats, stream=stream, page=page)

    with BackgroundServer(create_sim_app(sim)) as server:
        with monkeypatch.context() as patched:
            patched.setattr(archive, "put_page", failing)
            with pytest.raises(OSError, match="unreachable"):
                pull(engine, server.url, archive)
        with unit_of_work(engine) as session:
            assert state.committed_pages(session, "heartbeats") == 2
        assert archive.archived_page("heartbeats") == 2
        assert pull(engine, server.url, archive).caught_up
    truth = delivered_heartbeats(sim.heartbeats)
    assert archive.heartbeats().equals(truth)
    with unit_of_work(engine) as session:
        assert load_intervals(session.connection()).equals(online_intervals(truth, P))


def test_a_range_rebuild_restores_lost_intervals_and_changes_nothing_outside(
    engine: Engine, tmp_path: Any
) -> None:
    sim = UptimeSimulator(SPEC, token="secret")
    archive = HeartbeatArchive(str(tmp_path / "archive"))
    with BackgroundServer(create_sim_app(sim)) as server:
        assert pull(engine, server.url, archive).caught_up
    with unit_of_work(engine) as session:
        kept = load_intervals(session.connection())
    first, last = archive.days()[0], archive.days()[-1]
    noon = datetime.combine(first, datetime.min.time(), UTC) + timedelta(hours=12)
    with unit_of_work(engine) as session:  # lose the intervals around the first day's noon
        lost = take_intervals_overlapping(
            session.connection(), lo_us=to_us(noon), hi_us=to_us(noon + timedelta(hours=1))
        )
    assert lost.height > 0
    # the days the lost intervals spanned (lost data beyond the range stays lost)
    spanned = (lost.get_column("start").min().date(), lost.get_column("end").max().date())  # type: ignore[union-attr]
    stored = rebuild_intervals(engine, archive, P, days=spanned)
    with unit_of_work(engine) as session:
        assert load_intervals(session.connection()).equals(kept)
    assert stored >= lost.height
    rebuild_intervals(engine, archive, P, days=(last, last))  # nothing lost: nothing changes
    with unit_of_work(engine) as session:
        assert load_intervals(session.connection()).equals(kept)
    with pytest.raises(BadDays, match="ends"):
        rebuild_intervals(engine, archive, P, days=(last, first))
