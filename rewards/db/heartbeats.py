"""Storing heartbeats and the online intervals near them, one batch at a time.

A batch that has raw rows to keep goes to a temporary stage table; from there one
statement upserts it into `heartbeats` (where two rows disagree the smallest (boot_id,
agent_version) wins, DESIGN 4.1, compared bytewise on both dialects). The intervals near
the batch are handed to the service to merge with it (rewards/services/heartbeats.py) and
put back. Everything happens in the caller's transaction.

Intervals live in two tables: each device's latest in `open_intervals` (one row per
device, updated in place), the others in `online_intervals`. A page of on-time heartbeats
reads and updates only open rows; the others are read (and taken out) only for devices
the page reaches back before their latest interval's start: late heartbeats. Readers see
the union.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import polars as pl
from sqlalchemy import Connection, text

from rewards.core import HEARTBEATS, INTERVALS, TIME
from rewards.db.bulk import fetch_frame, load_frame, read_frame
from rewards.db.interval_reads import (
    COLUMN_LIST,
    INTERVAL_INTS,
    LAST_OF,
    as_time,
    closed_columns,
)

_INTERVAL_STAGE = (
    'device_id TEXT, start BIGINT, "end" BIGINT, first_boot_id TEXT, first_agent_version TEXT, '
    "last_boot_id TEXT, last_agent_version TEXT"
)
_STAGE = {
    "hb_stage": "device_id TEXT, observed_at BIGINT, boot_id TEXT, agent_version TEXT",
    "hb_touch": "device_id TEXT, lo BIGINT, hi BIGINT",
    "iv_open": _INTERVAL_STAGE,
}

# Intervals a batch can touch: within one liveness timeout of a new heartbeat.
_NEAR = (
    "t.device_id = i.device_id AND i.start <= t.hi + :timeout "
    'AND i."end" >= t.lo - :timeout + :period'
)


def _elide_last(intervals: pl.DataFrame) -> pl.DataFrame:
    """Closed rows as stored: the last boot and version NULL where equal to the first."""
    return intervals.with_columns(
        pl.when(pl.col(last) != pl.col(first)).then(pl.col(last)).alias(last)
        for last, first in LAST_OF.items()
    )


def _prepare_stage(connection: Connection, only: str | None = None) -> None:
    """Make the stage tables (`only` the one named) exist and empty, on this connection."""
    pg = connection.dialect.name == "postgresql"
    for name, columns in _STAGE.items():
        if only is not None and name != only:
            continue
        suffix = " ON COMMIT DELETE ROWS" if pg else ""
        connection.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({columns}){suffix}")
        connection.exec_driver_sql(f"DELETE FROM {name}")  # noqa: S608 - fixed identifiers


# The SQL below interpolates only fixed identifiers and constants; every value is bound.


def _upsert_sql(dialect: str) -> str:
    collate = ' COLLATE "C"' if dialect == "postgresql" else ""
    return (
        "INSERT INTO heartbeats (device_id, observed_at, boot_id, agent_version, received_at) "  # noqa: S608
        "SELECT device_id, observed_at, boot_id, agent_version, :received_at FROM hb_stage "
        "WHERE observed_at >= :kept_from "  # a WHERE lets SQLite parse ON CONFLICT here
        "ON CONFLICT (device_id, observed_at) DO UPDATE SET "
        "boot_id = excluded.boot_id, agent_version = excluded.agent_version "
        f"WHERE (excluded.boot_id{collate}, excluded.agent_version{collate}) "
        f"< (heartbeats.boot_id{collate}, heartbeats.agent_version{collate})"
    )


def _take_nearby_sql(dialect: str) -> str:
    """Delete the intervals near the batch and return them, in one statement."""
    if dialect == "postgresql":
        return (
            f"DELETE FROM online_intervals i USING hb_touch t WHERE {_NEAR} "  # noqa: S608
            f"RETURNING {closed_columns('i.')}"
        )
    return (
        "DELETE FROM online_intervals WHERE rowid IN "  # noqa: S608
        f"(SELECT i.rowid FROM hb_touch t JOIN online_intervals i ON {_NEAR}) "
        f"RETURNING {closed_columns()}"
    )


@contextmanager
def _nested_loops(connection: Connection) -> Iterator[None]:
    """Joins of a batch's stage with a stored table walk the table's index per staged row.

    PostgreSQL has no statistics for the temporary stage and, once the table is large,
    picks a hash join that scans every stored row per batch: ingestion would then cost
    O(stored rows), not O(page) (DESIGN 8). SQLite already loops over the stage."""
    pg = connection.dialect.name == "postgresql"
    if pg:
        connection.exec_driver_sql("SET LOCAL enable_hashjoin = off")
        connection.exec_driver_sql("SET LOCAL enable_mergejoin = off")
    try:
        yield
    finally:
        if pg:
            connection.exec_driver_sql("SET LOCAL enable_hashjoin TO DEFAULT")
            connection.exec_driver_sql("SET LOCAL enable_mergejoin TO DEFAULT")


def _as_int_times(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
    return frame.with_columns(pl.col(c).cast(pl.Int64) for c in columns)


def stage_heartbeats(connection: Connection, batch: pl.DataFrame) -> None:
    """Put a batch of distinct heartbeats (HEARTBEATS, one per device_id and observed_at)
    in the stage the calls below work on, replacing what it held."""
    _prepare_stage(connection, only="hb_stage")
    load_frame(connection, "hb_stage", _as_int_times(batch, "observed_at"))


_STORED_OF_STAGE_SQL = (
    "SELECT h.device_id, h.observed_at, h.boot_id, h.agent_version "
    "FROM hb_stage s JOIN heartbeats h "
    "ON h.device_id = s.device_id AND h.observed_at = s.observed_at"
)
_HEARTBEAT_INTS = {**HEARTBEATS, "observed_at": pl.Int64()}


def stored_at_stage(connection: Connection) -> pl.DataFrame:
    """The stored heartbeats (HEARTBEATS) at the staged ones' (device_id, observed_at)."""
    with _nested_loops(connection):
        known = fetch_frame(connection, _STORED_OF_STAGE_SQL, {}, _HEARTBEAT_INTS)
    return known.with_columns(pl.col("observed_at").cast(TIME))


def upsert_stage(connection: Connection, *, received_at_us: int, kept_from_us: int) -> int:
    """Upsert the staged heartbeats observed at or after `kept_from_us` into `heartbeats`,
    the smallest (boot_id, agent_version) winning (DESIGN 4.1). Returns how many rows were
    inserted or replaced."""
    stored = connection.execute(
        text(_upsert_sql(connection.dialect.name)),
        {"received_at": received_at_us, "kept_from": kept_from_us},
    ).rowcount
    return int(stored)


def any_stored_between(connection: Connection, *, lo_us: int, hi_us: int) -> bool:
    """Whether a raw heartbeat observed in [lo_us, hi_us] is stored. Cheap where it
    matters: with no settlement window the table holds next to nothing."""
    found = connection.execute(
        text("SELECT 1 FROM heartbeats WHERE observed_at >= :lo AND observed_at <= :hi LIMIT 1"),
        {"lo": lo_us, "hi": hi_us},
    ).first()
    return found is not None


def open_intervals_touched(connection: Connection, touch: pl.DataFrame) -> pl.DataFrame:
    """The open (latest) intervals (INTERVALS) of the devices in `touch` (device_id, lo,
    hi: each device's earliest and latest new heartbeat, µs), with `lo` and `hi`."""
    _prepare_stage(connection, only="hb_touch")
    load_frame(connection, "hb_touch", touch.select("device_id", "lo", "hi"))
    columns = ", ".join(f'o."{c}"' for c in INTERVALS)
    with _nested_loops(connection):  # read_frame: PostgreSQL's COPY into polars, no tuples
        found = read_frame(
            connection,
            f"SELECT {columns}, t.lo, t.hi FROM hb_touch t JOIN open_intervals o "  # noqa: S608
            "ON o.device_id = t.device_id",
            {},
            {**INTERVAL_INTS, "lo": pl.Int64(), "hi": pl.Int64()},
        )
    return as_time(found)


def take_closed_intervals_near(
    connection: Connection,
    reach: pl.DataFrame,
    *,
    liveness_timeout_us: int,
    heartbeat_period_us: int,
) -> pl.DataFrame:
    """Delete and return (INTERVALS) the closed intervals that heartbeats of `reach`
    (device_id, lo, hi: each device's earliest and latest, µs) can touch: those within
    `liveness_timeout_us` of one, an interval ending `heartbeat_period_us` after its last
    heartbeat. Only devices reaching back before their open interval's start can have
    any; the caller passes those alone, and none at all for a page of on-time heartbeats."""
    if reach.is_empty():
        return as_time(pl.DataFrame(schema=INTERVAL_INTS))
    connection.exec_driver_sql("DELETE FROM hb_touch")
    load_frame(connection, "hb_touch", reach.select("device_id", "lo", "hi"))
    window = {"timeout": liveness_timeout_us, "period": heartbeat_period_us}
    with _nested_loops(connection):
        nearby = fetch_frame(
            connection, _take_nearby_sql(connection.dialect.name), window, INTERVAL_INTS
        )
    return as_time(nearby)


def put_intervals(connection: Connection, intervals: pl.DataFrame) -> None:
    """Store merged intervals (INTERVALS) of the staged devices: each device's latest
    replaces its open row, the others are added to the closed ones."""
    ints = _as_int_times(intervals, "start", "end").sort("device_id", "start")
    latest = ints.group_by("device_id", maintain_order=True).last()
    closed = ints.join(latest.select("device_id", "start"), on=["device_id", "start"], how="anti")
    load_frame(connection, "online_intervals", _elide_last(closed))
    _prepare_stage(connection, only="iv_open")
    load_frame(connection, "iv_open", latest.select(list(INTERVALS)))
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in INTERVALS if c != "device_id")
    connection.exec_driver_sql(
        f"INSERT INTO open_intervals ({COLUMN_LIST}) SELECT {COLUMN_LIST} FROM iv_open "  # noqa: S608
        f"WHERE true ON CONFLICT (device_id) DO UPDATE SET {updates}"
    )


def insert_intervals(connection: Connection, intervals: pl.DataFrame) -> None:
    """Store intervals (INTERVALS) of devices that have none stored (a rebuild), each
    device's latest as its open row (call `settle_open_intervals` after the last batch)."""
    load_frame(
        connection, "online_intervals", _elide_last(_as_int_times(intervals, "start", "end"))
    )


def settle_open_intervals(connection: Connection) -> None:
    """After a rebuild's inserts: each device without an open row gets its latest interval
    moved to `open_intervals` (a device that kept its open row kept its latest)."""
    connection.exec_driver_sql(
        f"INSERT INTO open_intervals ({COLUMN_LIST}) SELECT {closed_columns('i.')} "  # noqa: S608
        "FROM online_intervals i WHERE start = "
        "(SELECT max(start) FROM online_intervals l WHERE l.device_id = i.device_id) "
        "AND NOT EXISTS (SELECT 1 FROM open_intervals o WHERE o.device_id = i.device_id)"
    )
    connection.exec_driver_sql(
        "DELETE FROM online_intervals WHERE EXISTS (SELECT 1 FROM open_intervals o "
        "WHERE o.device_id = online_intervals.device_id AND o.start = online_intervals.start)"
    )


def take_intervals_overlapping(connection: Connection, *, lo_us: int, hi_us: int) -> pl.DataFrame:
    """Delete and return (INTERVALS) every stored interval overlapping [lo_us, hi_us)."""
    taken = []
    for table, columns in (
        ("online_intervals", closed_columns()),
        ("open_intervals", COLUMN_LIST),
    ):
        taken.append(  # our own names, never input
            fetch_frame(
                connection,
                f'DELETE FROM {table} WHERE start < :hi AND "end" > :lo RETURNING {columns}',  # noqa: S608
                {"lo": lo_us, "hi": hi_us},
                INTERVAL_INTS,
            )
        )
    return as_time(pl.concat(taken))


def delete_intervals(connection: Connection) -> int:
    """Delete every stored online interval (a rebuild replaces them); returns how many."""
    closed = connection.execute(text("DELETE FROM online_intervals")).rowcount
    return int(closed + connection.execute(text("DELETE FROM open_intervals")).rowcount)


def load_heartbeats(connection: Connection) -> pl.DataFrame:
    """Every stored heartbeat as a HEARTBEATS frame, sorted by device_id, observed_at."""
    frame = fetch_frame(
        connection,
        "SELECT device_id, observed_at, boot_id, agent_version FROM heartbeats "
        "ORDER BY device_id, observed_at",
        {},
        {
            "device_id": pl.String(),
            "observed_at": pl.Int64(),
            "boot_id": pl.String(),
            "agent_version": pl.String(),
        },
    )
    return frame.with_columns(pl.col("observed_at").cast(TIME))


def count_heartbeats(connection: Connection) -> int:
    """How many heartbeats are stored."""
    return int(connection.exec_driver_sql("SELECT count(*) FROM heartbeats").scalar_one())


def prune_heartbeats(connection: Connection, *, observed_before_us: int) -> int:
    """Delete raw heartbeats observed before the cutoff; intervals are kept. Returns rows."""
    return int(
        connection.execute(
            text("DELETE FROM heartbeats WHERE observed_at < :cutoff"),
            {"cutoff": observed_before_us},
        ).rowcount
    )


def heartbeats_between(
    connection: Connection, *, after_us: int, until_us: int, device_id: str | None = None
) -> pl.DataFrame:
    """The stored heartbeats (HEARTBEATS) observed in (after_us, until_us], of one device
    when `device_id` is given."""
    one = "" if device_id is None else " AND device_id = :device"
    frame = fetch_frame(
        connection,
        "SELECT device_id, observed_at, boot_id, agent_version FROM heartbeats "  # noqa: S608
        f"WHERE observed_at > :after AND observed_at <= :until{one}",
        {"after": after_us, "until": until_us}
        | ({} if device_id is None else {"device": device_id}),
        _HEARTBEAT_INTS,
    )
    return frame.with_columns(pl.col("observed_at").cast(TIME))
