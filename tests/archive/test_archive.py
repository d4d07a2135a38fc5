"""The heartbeat archive (DESIGN 8): append-only by page, a retried page replaces its
earlier attempt, readers resolve duplicates by DESIGN 4.1, windows read only their days,
and upkeep compacts, applies retention and vacuums; on a local folder and on S3."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
from deltalake import DeltaTable

from rewards.archive import HeartbeatArchive
from rewards.core import HEARTBEATS, unique_heartbeats


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2024, 4, day, hour, minute, tzinfo=UTC)


def beats(*rows: tuple[str, datetime, str, str]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=dict(HEARTBEATS), orient="row")


PAGE_1 = beats(("gpu-1", at(25, 1), "b1", "0.9.9"), ("gpu-2", at(25, 23, 59), "b1", "0.9.9"))
PAGE_2 = beats(
    ("gpu-1", at(26, 0, 1), "b1", "0.9.9"),
    ("gpu-1", at(25, 1), "b0", "0.9.9"),  # the feed delivered gpu-1's 01:00 again, disagreeing
)


def test_pages_append_and_a_retried_page_replaces_its_earlier_attempt(archive_url: str) -> None:
    archive = HeartbeatArchive(archive_url)
    assert archive.archived_page("heartbeats") is None
    assert archive.put_page(PAGE_1, stream="heartbeats", page=1) == 2
    half = PAGE_2.head(1)  # a first attempt at page 2 that never committed in the database
    archive.put_page(half, stream="heartbeats", page=2)
    archive.put_page(PAGE_2, stream="heartbeats", page=2)  # the retry, with the whole page
    assert archive.archived_page("heartbeats") == 2
    raw = archive.scan().collect()
    assert raw.height == 4  # not 5: the first attempt at page 2 was replaced
    assert sorted(raw.get_column("page").to_list()) == [1, 1, 2, 2]
    assert sorted(raw.get_column("day").unique().to_list()) == ["2024-04-25", "2024-04-26"]
    everything = pl.concat([PAGE_1, PAGE_2])
    assert archive.heartbeats().equals(unique_heartbeats(everything))


def test_a_window_reads_its_heartbeats_only(archive_url: str) -> None:
    archive = HeartbeatArchive(archive_url)
    archive.put_page(PAGE_1, stream="heartbeats", page=1)
    archive.put_page(PAGE_2, stream="heartbeats", page=2)
    window = archive.heartbeats(at(25, 2), at(26, 0, 1))
    assert window.get_column("device_id").to_list() == ["gpu-2"]
    assert archive.heartbeats(at(27, 0)).is_empty()


def test_upkeep_compacts_drops_old_days_and_keeps_the_rest(archive_url: str) -> None:
    archive = HeartbeatArchive(archive_url)
    for page in range(1, 6):  # five small files on the 26th
        archive.put_page(
            beats(("gpu-1", at(26, page), "b1", "0.9.9")), stream="heartbeats", page=page
        )
    archive.put_page(PAGE_1, stream="heartbeats", page=6)
    before = archive.heartbeats()
    done = archive.upkeep(keep_from=date(2024, 4, 26), vacuum_hours=0)
    assert done.days_dropped == 1 and done.files_removed >= 5 and done.files_added >= 1
    assert archive.heartbeats().equals(before.filter(pl.col("observed_at") >= at(26, 0)))
    assert archive.archived_page("heartbeats") == 6  # the page sequence survives upkeep


def test_an_empty_page_writes_nothing(archive_url: str) -> None:
    archive = HeartbeatArchive(archive_url)
    assert archive.put_page(beats(), stream="heartbeats", page=1) == 0
    assert archive.archived_page("heartbeats") is None
    assert archive.heartbeats().is_empty()


def day_files(archive: HeartbeatArchive, day: str) -> list[pl.DataFrame]:
    table = DeltaTable(archive.url, storage_options=archive.options or None)
    return [
        pl.read_parquet(uri, storage_options=archive.options or None)
        for uri in table.file_uris(file_pruning_predicate=[("day", "=", day)])
    ]


def test_a_settled_day_is_sorted_by_device_once_and_again_after_a_late_page(
    archive_url: str,
) -> None:
    """Sorted by device a day's heartbeats compress to about a third of arrival order (each
    device's times and versions sit together): settled days are rewritten so, once, and
    again only if a late page lands in them. The day being filled is only compacted."""
    archive = HeartbeatArchive(archive_url)
    for page in range(1, 7):  # arrival order: every device in every page
        rows = [(f"gpu-{d}", at(25, page, d), "b1", "0.9.9") for d in (3, 1, 2)]
        archive.put_page(beats(*rows), stream="heartbeats", page=page)
    archive.put_page(beats(("gpu-9", at(26, 1), "b1", "0.9.9")), stream="heartbeats", page=7)
    before = archive.heartbeats()
    done = archive.upkeep(sort_before=date(2024, 4, 26), vacuum_hours=0)
    assert done.days_sorted == 1
    (only,) = day_files(archive, "2024-04-25")
    assert only.get_column("device_id").is_sorted() and only.height == 18
    assert archive.heartbeats().equals(before)
    assert archive.upkeep(sort_before=date(2024, 4, 26)).days_sorted == 0  # sorted already
    late = beats(("gpu-0", at(25, 9), "b1", "0.9.9"))
    archive.put_page(late, stream="heartbeats", page=8)
    assert archive.upkeep(sort_before=date(2024, 4, 26), vacuum_hours=0).days_sorted == 1
    (again,) = day_files(archive, "2024-04-25")
    assert again.get_column("device_id").is_sorted() and again.height == 19
    assert archive.archived_page("heartbeats") == 8  # the page sequence survives sorting


def test_the_writer_compacts_every_so_many_pages_and_a_retry_still_replaces(
    archive_url: str,
) -> None:
    """A write costs time in proportion to the table's live files, so the writer compacts
    after every `compact_every` pages; a page retried after that still replaces itself."""
    archive = HeartbeatArchive(archive_url)
    archive.compact_every = 4
    for page in range(1, 10):
        one = beats((f"gpu-{page}", at(25, page), "b1", "0.9.9"))
        archive.put_page(one, stream="heartbeats", page=page)
    table = DeltaTable(archive.url, storage_options=archive.options or None)
    assert len(table.file_uris()) <= 2  # nine pages, compacted after the fourth and eighth
    retry = beats(("gpu-9", at(25, 9), "b0", "0.9.9"), ("gpu-10", at(25, 10), "b1", "0.9.9"))
    archive.put_page(retry, stream="heartbeats", page=9)  # its commit did not happen
    raw = archive.scan().collect()
    assert raw.height == 10 and sorted(raw.filter(pl.col("page") == 9)["boot_id"]) == ["b0", "b1"]
    assert archive.archived_page("heartbeats") == 9


def test_the_writer_expires_the_log_before_old_checkpoints_and_keeps_every_page(
    archive_url: str,
) -> None:
    """Every write lists the Delta log, so a log kept for Delta's default 30 days makes each
    page slower than the one before; the writer deletes the commit files before a
    checkpoint older than the retention. What remains reads the same, the page sequence
    survives, and a retried page still replaces itself."""
    archive = HeartbeatArchive(archive_url)
    archive.checkpoint_every, archive.log_retention_s = 4, 0
    for page in range(1, 11):
        archive.put_page(
            beats((f"gpu-{page}", at(25, page), "b1", "0.9.9")), stream="heartbeats", page=page
        )
    options = archive.options or None
    table = DeltaTable(archive.url, storage_options=options)
    assert table.metadata().configuration["delta.checkpointInterval"] == "4"
    try:
        DeltaTable(archive.url, version=1, storage_options=options)
        expired = False
    except Exception:  # deltalake raises errors of its own for a version it cannot load
        expired = True
    assert expired, "the commit of page 1 is still in the log"
    assert archive.archived_page("heartbeats") == 10
    retry = beats(("gpu-10", at(25, 10), "b0", "0.9.9"))
    archive.put_page(retry, stream="heartbeats", page=10)
    raw = archive.scan().collect()
    assert raw.height == 10 and raw.filter(pl.col("page") == 10)["boot_id"].to_list() == ["b0"]
    assert HeartbeatArchive(archive.url, archive.options).archived_page("heartbeats") == 10


def test_a_table_made_before_the_log_retention_gets_it_at_its_next_upkeep(
    archive_url: str,
) -> None:
    archive = HeartbeatArchive(archive_url)
    archive.put_page(PAGE_1, stream="heartbeats", page=1)
    table = DeltaTable(archive.url, storage_options=archive.options or None)
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 30 days"})
    archive.upkeep()
    table = DeltaTable(archive.url, storage_options=archive.options or None)
    assert table.metadata().configuration["delta.logRetentionDuration"] == "interval 300 seconds"
