"""Storing heartbeats: idempotent, the dedupe rule in SQL, intervals kept incrementally."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards.core import online_intervals, to_us, window_intervals
from rewards.db.engine import unit_of_work
from rewards.db.heartbeats import load_heartbeats
from rewards.db.interval_reads import load_intervals
from rewards.services import heartbeats as heartbeat_service
from rewards.services.heartbeats import store_heartbeats
from rewards.services.intervals import apply_retention
from tests.builders import at, concat, heartbeats, policy
from tests.core.test_intervals import BASE, frame_of, record

P = policy()


def store(engine, *frames: pl.DataFrame) -> int:  # type: ignore[no-untyped-def]
    stored = 0
    for frame in frames:
        with unit_of_work(engine) as session:
            stored += store_heartbeats(session.connection(), frame, P, received_at_us=0).stored
    return stored


def stored_intervals(engine):  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as session:
        return load_intervals(session.connection())


def stored_heartbeats(engine):  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as session:
        return load_heartbeats(session.connection())


def test_storing_the_same_batch_twice_changes_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    batch = heartbeats("gpu-1", start="2024-04-25T08:00Z", n=10)
    assert store(engine, batch) == 10
    assert store(engine, batch) == 0
    assert stored_heartbeats(engine).height == 10
    assert stored_intervals(engine).height == 1


def test_a_later_smaller_duplicate_replaces_the_stored_row_and_a_larger_one_does_not(
    engine,
) -> None:  # type: ignore[no-untyped-def]
    store(engine, heartbeats("gpu-1", start="2024-04-25T08:00Z", boot="m", version="1"))
    store(engine, heartbeats("gpu-1", start="2024-04-25T08:00Z", boot="z", version="0"))
    assert stored_heartbeats(engine).get_column("boot_id").to_list() == ["m"]
    # "B" < "m" in byte order although a case-insensitive collation would say otherwise
    store(engine, heartbeats("gpu-1", start="2024-04-25T08:00Z", boot="B", version="1"))
    assert stored_heartbeats(engine).get_column("boot_id").to_list() == ["B"]
    assert stored_intervals(engine).get_column("first_boot_id").to_list() == ["B"]


def test_late_heartbeat_joins_two_stored_intervals(engine) -> None:  # type: ignore[no-untyped-def]
    store(
        engine,
        heartbeats("gpu-1", start="2024-04-25T08:00Z", n=3),
        heartbeats("gpu-1", start="2024-04-25T08:04Z", n=3),
    )
    assert stored_intervals(engine).height == 2
    store(engine, heartbeats("gpu-1", start="2024-04-25T08:03Z"))
    assert stored_intervals(engine).select("start", "end").rows() == [
        (at("2024-04-25T08:00Z"), at("2024-04-25T08:07Z"))
    ]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(record, min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40), max_size=3)
)
def test_batches_in_any_order_store_what_the_core_computes_from_all(engine, records, cuts) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as session:
        session.connection().exec_driver_sql("DELETE FROM heartbeats")
        session.connection().exec_driver_sql("DELETE FROM online_intervals")
        session.connection().exec_driver_sql("DELETE FROM open_intervals")
    bounds = [0, *sorted(c for c in cuts if c <= len(records)), len(records)]
    store(engine, *(frame_of(records[lo:hi]) for lo, hi in pairwise(bounds)))
    assert stored_intervals(engine).rows() == online_intervals(frame_of(records), P).rows()
    assert (
        stored_heartbeats(engine).height
        == frame_of(records).unique(["device_id", "observed_at"]).height
    )


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(record, min_size=1, max_size=40),
    windows=st.lists(st.tuples(st.integers(-5, 45), st.integers(1, 30)), min_size=1, max_size=4),
)
def test_a_seasons_window_reads_what_the_core_keeps_of_every_interval(
    engine, records, windows
) -> None:  # type: ignore[no-untyped-def]
    """The database's read of a window (through the key, a device at a time) is
    core.window_intervals of every stored interval, open rows and closed ones alike."""
    with unit_of_work(engine) as session:
        for table in ("heartbeats", "online_intervals", "open_intervals"):
            session.connection().exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608
    store(engine, frame_of(records[: len(records) // 2]), frame_of(records[len(records) // 2 :]))
    every = stored_intervals(engine)
    for first, length in windows:
        lo = to_us(BASE + timedelta(seconds=45 * first))
        hi = lo + length * 45_000_000
        with unit_of_work(engine) as session:
            read = load_intervals(session.connection(), (lo, hi))
        assert read.rows() == window_intervals(every, lo, hi).rows(), (lo, hi)


def test_other_devices_intervals_are_left_alone(engine) -> None:  # type: ignore[no-untyped-def]
    store(
        engine,
        concat(
            heartbeats("gpu-1", start="2024-04-25T08:00Z", n=2),
            heartbeats("gpu-2", start="2024-04-25T08:00Z", n=2),
        ),
    )
    store(engine, heartbeats("gpu-1", start="2024-04-25T08:02Z", n=2))
    assert stored_intervals(engine).select("device_id", "end").rows() == [
        ("gpu-1", at("2024-04-25T08:04Z")),
        ("gpu-2", at("2024-04-25T08:02Z")),
    ]


def test_retention_drops_old_raw_heartbeats_and_keeps_intervals(engine) -> None:  # type: ignore[no-untyped-def]
    store(
        engine,
        heartbeats("gpu-1", start="2024-04-01T00:00Z", n=3),
        heartbeats("gpu-1", start="2024-04-25T00:00Z", n=3),
    )
    deleted = apply_retention(engine, now=at("2024-04-30T00:00Z"), keep=timedelta(days=10))
    assert deleted == 3
    assert stored_heartbeats(engine).height == 3
    assert stored_intervals(engine).height == 2


def test_heartbeats_disagreeing_on_boot_or_version_are_counted_as_conflicts(engine) -> None:  # type: ignore[no-untyped-def]
    first = heartbeats("gpu-1", start="2024-04-25T08:00Z", n=3)
    again = concat(
        heartbeats("gpu-1", start="2024-04-25T08:00Z", n=3),  # the same: no conflict
        heartbeats("gpu-1", start="2024-04-25T08:01Z", n=1, boot="boot-0"),  # vs stored
        heartbeats("gpu-1", start="2024-04-25T09:00Z", n=1),
        heartbeats("gpu-1", start="2024-04-25T09:00Z", n=1, version="0.9"),  # in the batch
    )
    with unit_of_work(engine) as session:
        assert store_heartbeats(session.connection(), first, P, received_at_us=0).conflicting == 0
    with unit_of_work(engine) as session:
        result = store_heartbeats(session.connection(), again, P, received_at_us=0)
    assert result.conflicting == 2


def _heartbeat_seq_scans(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        return int(
            connection.exec_driver_sql(
                "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'heartbeats'"
            ).scalar_one()
        )


@pytest.mark.parametrize("dialect", ["postgresql"])  # SQLite loops over the stage anyway
def test_storing_a_page_never_scans_every_stored_heartbeat(engine) -> None:  # type: ignore[no-untyped-def]
    """DESIGN 8: interval upkeep and conflict counting cost O(page), not O(stored rows), so
    the ingest rate does not fall as the table grows."""
    fleet = concat(
        *(heartbeats(f"gpu-{d}", start="2024-04-25T00:00Z", n=500) for d in range(200))
    )  # 100,000 stored heartbeats
    store(engine, fleet)
    with engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE heartbeats")
        connection.commit()
    page = concat(
        *(heartbeats(f"gpu-{d}", start="2024-04-25T08:00Z", n=5, boot="boot-2") for d in range(200))
    )
    before = _heartbeat_seq_scans(engine)
    with engine.connect() as connection:
        with connection.begin():
            result = store_heartbeats(connection, page, P, received_at_us=0)
        connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
        connection.exec_driver_sql("SELECT 1")  # the flush happens at the end of a statement
    assert result.conflicting == 1000  # same (device, time) as stored, another boot
    assert _heartbeat_seq_scans(engine) == before


def test_on_time_pages_read_only_open_intervals_and_late_ones_reach_back(  # type: ignore[no-untyped-def]
    engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN 8, O(page): a page of on-time heartbeats reads and updates only its devices'
    open rows, however many closed intervals are stored; only a heartbeat before a device's
    open interval looks among that device's closed ones."""
    reached: list[int] = []
    original = heartbeat_service.take_closed_intervals_near

    def spy(connection, reach, **kwargs):  # type: ignore[no-untyped-def]
        reached.append(reach.height)
        return original(connection, reach, **kwargs)

    monkeypatch.setattr(heartbeat_service, "take_closed_intervals_near", spy)
    pages = [  # two devices, each with a gap between every page: a closed interval a page
        concat(
            heartbeats("gpu-1", start=f"2024-04-25T{hour:02}:00Z", n=3),
            heartbeats("gpu-2", start=f"2024-04-25T{hour:02}:30Z", n=3),
        )
        for hour in range(8, 14)
    ]
    store(engine, *pages)
    assert reached == [0] * len(pages)
    with unit_of_work(engine) as session:
        count = session.connection().exec_driver_sql
        assert count("SELECT count(*) FROM open_intervals").scalar_one() == 2
        assert count("SELECT count(*) FROM online_intervals").scalar_one() == 10
    late = heartbeats("gpu-1", start="2024-04-25T09:03Z")  # joins gpu-1's 09:00 interval
    store(engine, late)
    assert reached[-1] == 1
    assert stored_intervals(engine).equals(online_intervals(concat(*pages, late), P))


def test_with_nothing_to_keep_and_nothing_stored_near_a_page_skips_the_stage(  # type: ignore[no-untyped-def]
    engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database window of 0 (DESIGN 8): a page of heartbeats all older than the window
    stores no raw row and stages none, yet its intervals and its conflicts (in the page,
    and with a raw row still kept from before) are what the staged path gives."""
    staged: list[int] = []
    original = heartbeat_service.stage_heartbeats

    def spy(connection, batch):  # type: ignore[no-untyped-def]
        staged.append(batch.height)
        return original(connection, batch)

    monkeypatch.setattr(heartbeat_service, "stage_heartbeats", spy)
    page = concat(
        heartbeats("gpu-1", start="2024-04-25T08:00Z", n=5),
        heartbeats("gpu-1", start="2024-04-25T08:02Z", n=1, boot="boot-0"),  # in the page
        heartbeats("gpu-2", start="2024-04-25T08:00Z", n=3),
    )
    kept_from = to_us(at("2024-04-26T00:00Z"))
    with unit_of_work(engine) as session:
        result = store_heartbeats(
            session.connection(), page, P, received_at_us=0, kept_from_us=kept_from
        )
    assert staged == [] and result == heartbeat_service.StoredBatch(8, 1)
    assert stored_heartbeats(engine).is_empty()
    assert stored_intervals(engine).equals(online_intervals(page, P))
    # a raw row kept earlier (a wider window then) is met: the page is staged after all
    store(engine, heartbeats("gpu-3", start="2024-04-25T09:00Z", n=1))
    late = heartbeats("gpu-3", start="2024-04-25T09:00Z", n=1, version="0.9")
    with unit_of_work(engine) as session:
        result = store_heartbeats(
            session.connection(), late, P, received_at_us=0, kept_from_us=kept_from
        )
    assert staged == [1, 1] and result.conflicting == 1
