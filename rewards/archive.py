"""The heartbeat archive (DESIGN 8): every raw heartbeat the feed delivered, in an
append-only Delta Lake table partitioned by UTC day, on a local directory or object storage.

A page is archived before its database commit, under the page's sequence number in the
stream (`ingest_cursors.pages` + 1). The table records, per stream, the newest sequence it
holds (a Delta app transaction), so a page retried after a crash between the archive write
and the database commit *replaces* what the failed attempt wrote instead of adding it twice:
whatever the crash point, each sequence number holds the content the database committed.
Readers resolve duplicates by DESIGN 4.1 anyway (`rewards.core.unique_heartbeats`), so a
heartbeat delivered twice by the feed is one heartbeat wherever the archive is read.

`url` is a directory path or `s3://bucket/prefix`; object storage credentials and endpoint
come from the usual AWS environment variables (or `storage_options`). S3 commits use
conditional puts, so two writers (ingest and compaction) cannot overwrite each other's log
entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from rewards.core import HEARTBEATS, to_us, unique_heartbeats

# the archive's columns: the heartbeat, which page of which stream delivered it, its day
ARCHIVE_COLUMNS: dict[str, pl.DataType] = {
    "device_id": pl.String(),
    "observed_us": pl.Int64(),
    "boot_id": pl.String(),
    "agent_version": pl.String(),
    "stream": pl.String(),
    "page": pl.Int64(),
    "day": pl.String(),
}
_S3_DEFAULTS = {"AWS_CONDITIONAL_PUT": "etag"}
COMPACT_EVERY = 500  # pages a writer appends between its own compactions
# Delta's log: a checkpoint every CHECKPOINT_EVERY commits, and the commit files before a
# checkpoint older than LOG_RETENTION_S deleted every CHECKPOINT_EVERY pages (readers only
# ever need the log from the newest checkpoint on). Every write lists the log directory, so
# a log left to Delta's default 30 days made each page slower than the one before: 23 ms a
# page on a new table, 126 ms after 6,000 pages (under two fleet hours).
CHECKPOINT_EVERY = 100
LOG_RETENTION_S = 300
_SORTED = "sorted:"  # app transaction per day: the newest page its last sort included


@dataclass(frozen=True)
class Upkeep:
    """What compaction and retention did: files rewritten and removed, days dropped."""

    files_added: int
    files_removed: int
    files_vacuumed: int
    days_dropped: int
    days_sorted: int = 0


class HeartbeatArchive:
    """The Delta table of raw heartbeats at `url`."""

    def __init__(self, url: str, storage_options: dict[str, str] | None = None) -> None:
        self.url = url
        self.remote = "://" in url
        options = dict(_S3_DEFAULTS) if url.startswith("s3://") else {}
        self.options = {**options, **(storage_options or {})}
        if not self.remote:
            Path(url).mkdir(parents=True, exist_ok=True)
        self._loaded: DeltaTable | None = None
        self.compact_every = COMPACT_EVERY
        self.checkpoint_every = CHECKPOINT_EVERY
        self.log_retention_s = LOG_RETENTION_S
        self._written = 0  # pages written since this writer last compacted
        self._logged = 0  # pages written since this writer last expired the log

    def _table(self) -> DeltaTable | None:
        """The table as of its newest commit. Loaded once, then brought up to date with
        only the commits since (loading it afresh replays the log since the last checkpoint:
        up to a hundred files, which made every page's write slower than the one before)."""
        if self._loaded is not None:
            self._loaded.update_incremental()
            return self._loaded
        try:
            self._loaded = DeltaTable(self.url, storage_options=self.options or None)
        except TableNotFoundError:
            return None
        return self._loaded

    def archived_page(self, stream: str) -> int | None:
        """The newest page sequence number of `stream` the archive holds (None: none)."""
        table = self._table()
        return table.transaction_version(stream) if table is not None else None

    def days(self) -> list[date]:
        """The UTC days the archive holds heartbeats of, in order."""
        table = self._table()
        if table is None:
            return []
        return sorted({date.fromisoformat(p["day"]) for p in table.partitions()})

    def put_page(self, heartbeats: pl.DataFrame, *, stream: str, page: int) -> int:
        """Archive one page's raw heartbeats (HEARTBEATS) as page `page` of `stream`,
        replacing whatever an earlier attempt at the same page wrote; returns the rows
        written. Pages of a stream must be put in increasing order."""
        rows = _rows(heartbeats, stream, page)
        if rows.is_empty():
            return 0
        commit = CommitProperties(app_transactions=[Transaction(stream, page)])
        table = self._table()
        options = self.options or None
        if table is not None and (table.transaction_version(stream) or 0) >= page:
            # a retry of a page whose database commit did not happen: replace its rows
            write_deltalake(
                table,
                rows,
                partition_by=["day"],
                mode="overwrite",
                predicate=f"stream = '{_quoted(stream)}' AND page = {page}",
                storage_options=options,
                commit_properties=commit,
            )
        else:
            write_deltalake(
                table if table is not None else self.url,
                rows,
                partition_by=["day"],
                mode="append",
                storage_options=options,
                commit_properties=commit,
                configuration=self._log_properties() if table is None else None,
            )
        self._written += 1
        self._logged += 1
        if self._written >= self.compact_every:
            self.compact()
        if self._logged >= self.checkpoint_every:
            self.expire_log()
        return rows.height

    def _log_properties(self) -> dict[str, str | None]:
        return {
            "delta.checkpointInterval": str(self.checkpoint_every),
            "delta.logRetentionDuration": f"interval {self.log_retention_s} seconds",
        }

    def expire_log(self) -> None:
        """Delete the log's commit files that no reader needs any more: those before a
        checkpoint older than the log retention (Delta's log cleanup). A table made before
        the retention was set gets it here."""
        self._logged = 0
        table = self._table()
        if table is None:
            return
        wanted = self._log_properties()
        if any(table.metadata().configuration.get(k) != v for k, v in wanted.items()):
            table.alter.set_table_properties(wanted)  # type: ignore[arg-type]
        table.cleanup_metadata()

    def compact(self) -> int:
        """Rewrite the small files into large ones (Delta's optimize); returns the files
        removed. The writer compacts after every `compact_every` pages: each write costs
        time in proportion to the table's live files (42 ms with a few, 350 ms with 2,500),
        so a pull that caught up faster than the hourly upkeep compacted slowed down as it
        went (bench/fleet_ingest.py: from 27,000 to 18,000 heartbeats/s over 30M)."""
        self._written = 0
        table = self._table()
        if table is None:
            return 0
        return int(table.optimize.compact().get("numFilesRemoved", 0))

    def scan(self, start: datetime | None = None, end: datetime | None = None) -> pl.LazyFrame:
        """The archived heartbeats observed in [start, end) (either open), as delivered:
        duplicates included, in the archive's columns. Reads only the days it needs."""
        table = self._table()
        if table is None:
            return pl.LazyFrame(schema=ARCHIVE_COLUMNS)
        frame = pl.scan_delta(table)
        if start is not None:
            frame = frame.filter(
                pl.col("day") >= _day(start), pl.col("observed_us") >= to_us(start)
            )
        if end is not None:
            until = pl.col("observed_us") < to_us(end)
            frame = frame.filter(pl.col("day") <= _day(end), until)
        return frame

    def heartbeats(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> pl.DataFrame:
        """The heartbeats observed in [start, end), one per (device_id, observed_at) by
        DESIGN 4.1, in HEARTBEATS columns, sorted by device and time."""
        raw = self.scan(start, end).select(
            "device_id",
            pl.col("observed_us").cast(pl.Datetime("us", "UTC")).alias("observed_at"),
            "boot_id",
            "agent_version",
        )
        return unique_heartbeats(raw.collect().cast(dict(HEARTBEATS)))  # type: ignore[arg-type]

    def upkeep(
        self,
        *,
        keep_from: date | None = None,
        vacuum_hours: int = 168,
        sort_before: date | None = None,
    ) -> Upkeep:
        """Drop the days before `keep_from` (retention, explicit); rewrite each day before
        `sort_before` (settled: late pages are rare there) sorted by device, unless it is
        sorted already since its newest page; compact the other days' small files into
        large ones (Delta's optimize); delete files no version newer than `vacuum_hours`
        still needs (vacuum).

        Sorted by device a day compresses to about a third of arrival order: each device's
        times, boots and versions sit together (bench/fleet_ingest.py measures both). The
        sort is Delta's Z-order over device_id alone, which spills to disk, so a fleet day
        never has to fit in memory."""
        table = self._table()
        if table is None:
            return Upkeep(0, 0, 0, 0)
        dropped = 0
        if keep_from is not None:
            before = {p["day"] for p in table.partitions() if p["day"] < keep_from.isoformat()}
            if before:
                table.delete(f"day < '{keep_from.isoformat()}'")
                dropped = len(before)
        added = removed = 0
        settled = [] if sort_before is None else self._unsorted_days(table, sort_before)
        for day, newest in settled:
            done = table.optimize.z_order(["device_id"], partition_filters=[("day", "=", day)])
            # optimize commits no app transaction: an empty commit records the sort (a crash
            # before it only means the day is sorted again next time)
            table.create_write_transaction(
                [],
                mode="append",
                schema=table.schema(),
                partition_by=["day"],
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(_SORTED + day, newest)]
                ),
            )
            added += int(done.get("numFilesAdded", 0))
            removed += int(done.get("numFilesRemoved", 0))
        others = [("day", "not in", [d for d, _ in settled])] if settled else None
        metrics: dict[str, Any] = table.optimize.compact(partition_filters=others)
        vacuumed = table.vacuum(
            retention_hours=vacuum_hours, enforce_retention_duration=False, dry_run=False
        )
        self.expire_log()
        return Upkeep(
            added + int(metrics.get("numFilesAdded", 0)),
            removed + int(metrics.get("numFilesRemoved", 0)),
            len(vacuumed),
            dropped,
            len(settled),
        )

    def _unsorted_days(self, table: DeltaTable, before: date) -> list[tuple[str, int]]:
        """(day, newest page in it) of each day before `before` that holds a page newer
        than the one it was last sorted up to (a Delta app transaction per day)."""
        days = sorted(p["day"] for p in table.partitions() if p["day"] < before.isoformat())
        if not days:
            return []
        newest = (
            pl.scan_delta(table)
            .filter(pl.col("day").is_in(days))
            .group_by("day")
            .agg(pl.col("page").max())
            .collect()
        )
        return [
            (day, int(page))
            for day, page in sorted(newest.iter_rows())
            if (table.transaction_version(_SORTED + day) or 0) < page
        ]


def _rows(heartbeats: pl.DataFrame, stream: str, page: int) -> pl.DataFrame:
    observed = pl.col("observed_at").dt.convert_time_zone("UTC")
    return heartbeats.select(
        "device_id",
        observed.dt.epoch("us").alias("observed_us"),
        "boot_id",
        "agent_version",
        pl.lit(stream).alias("stream"),
        pl.lit(page, dtype=pl.Int64).alias("page"),
        observed.dt.strftime("%Y-%m-%d").alias("day"),
    )


def _day(moment: datetime) -> str:
    """The UTC day of `moment` (a naive time is taken as UTC), as the partition names it."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).date().isoformat()


def _quoted(value: str) -> str:
    return value.replace("'", "''")
