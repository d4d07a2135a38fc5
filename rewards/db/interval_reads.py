"""Reading the stored online intervals: every one, a season's window of them, one
device's, or counts of them.

Intervals live in two tables (rewards/db/heartbeats.py writes them): each device's latest
in `open_intervals`, the others in `online_intervals`, where a row's last boot and version
are NULL when equal to its first (a slimmer row, migration 0012). Readers see the union,
the last columns restored.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
from sqlalchemy import Connection, text

from rewards.core import INTERVALS, TIME
from rewards.db.bulk import fetch_frame, read_frame, read_frames

INTERVAL_INTS = {**INTERVALS, "start": pl.Int64(), "end": pl.Int64()}
COLUMN_LIST = ", ".join(f'"{c}"' for c in INTERVALS)
# A closed row's last boot and version are NULL when equal to its first.
LAST_OF = {"last_boot_id": "first_boot_id", "last_agent_version": "first_agent_version"}


def closed_columns(alias: str = "") -> str:
    """The INTERVALS columns of `online_intervals` (as `alias`), the last ones restored."""
    return ", ".join(
        f'coalesce({alias}"{c}", {alias}"{LAST_OF[c]}") AS "{c}"'
        if c in LAST_OF
        else f'{alias}"{c}"'
        for c in INTERVALS
    )


def as_time(intervals: pl.DataFrame) -> pl.DataFrame:
    """INTERVAL_INTS as INTERVALS: the µs integers as times."""
    return intervals.with_columns(pl.col("start").cast(TIME), pl.col("end").cast(TIME))


def _every_interval(where: str = "") -> str:
    """Both interval tables as one (`where` is a fixed condition, never input)."""
    return (
        f"(SELECT {closed_columns()} FROM online_intervals{where} "  # noqa: S608
        f"UNION ALL SELECT {COLUMN_LIST} FROM open_intervals{where}) AS every_interval"
    )


def load_intervals(connection: Connection, window: tuple[int, int] | None = None) -> pl.DataFrame:
    """The stored online intervals (every one, or a season's `window` of them: see
    `interval_batches`) as an INTERVALS frame, sorted by device_id, start (bytewise, as the
    core sorts, whatever the database's collation)."""
    frames = list(interval_batches(connection, window))
    if not frames:
        return as_time(pl.DataFrame(schema=INTERVAL_INTS))
    return pl.concat(frames, rechunk=False).sort("device_id", "start")


def intervals_overlapping(connection: Connection, *, lo_us: int, hi_us: int) -> pl.DataFrame:
    """The stored intervals overlapping [lo_us, hi_us) as an INTERVALS frame, sorted by
    device_id, start (bytewise): what a few epochs' eligibility needs, not the season's."""
    found = read_frame(
        connection,
        f'SELECT * FROM {_every_interval()} WHERE start < :hi AND "end" > :lo',  # noqa: S608
        {"lo": lo_us, "hi": hi_us},
        INTERVAL_INTS,
    )
    return as_time(found.sort("device_id", "start"))


def interval_batches(
    connection: Connection, window: tuple[int, int] | None = None
) -> Iterator[pl.DataFrame]:
    """The stored online intervals as INTERVALS frames, a batch at a time, in no particular
    order (a season's are never held whole here); with a `window` (lo, hi) in µs, only
    those a season depends on (core.window_intervals)."""
    every = f"SELECT * FROM {_every_interval()}"  # noqa: S608
    sql = every if window is None else _in_window(connection.dialect.name, *window)
    for batch in read_frames(connection, sql, {}, INTERVAL_INTS):
        yield as_time(batch)


def _in_window(dialect: str, lo: int, hi: int) -> str:
    """core.window_intervals as one query: a device's neighbours of the window are found
    through the primary key, never by scanning the history. The open row is a device's
    latest: the one before when it ends by `lo`, the one after when it starts at `hi` or
    later and no closed row does. `lo`, `hi`: our integers, inlined to stream via ADBC."""
    lo, hi = int(lo), int(hi)
    parts = [
        f'SELECT * FROM {_every_interval()} WHERE start < {hi} AND "end" > {lo}',  # noqa: S608
        f'SELECT {COLUMN_LIST} FROM open_intervals WHERE "end" <= {lo}',  # noqa: S608
        f"SELECT {COLUMN_LIST} FROM open_intervals d WHERE start >= {hi} AND NOT EXISTS "  # noqa: S608
        f"(SELECT 1 FROM online_intervals x WHERE x.device_id = d.device_id AND x.start >= {hi})",
    ]
    sides = (  # the closed row nearest the window on each side, and what else it must be
        (f"start < {lo} ORDER BY x.start DESC", lo, f'"end" <= {lo}'),
        (f"start >= {hi} ORDER BY x.start", hi, f"start >= {hi}"),
    )
    for nearest, edge, kept in sides:
        near = f"online_intervals x WHERE x.device_id = d.device_id AND x.{nearest} LIMIT 1"
        if dialect == "postgresql":  # the row itself, by LATERAL
            parts.append(
                f"SELECT p.* FROM open_intervals d CROSS JOIN LATERAL (SELECT "  # noqa: S608
                f"{closed_columns('x.')} FROM {near}) p WHERE d.start >= {edge} AND p.{kept}"
            )
        else:  # SQLite: the row's start by a correlated lookup, then the row
            parts.append(
                f"SELECT {closed_columns('o.')} FROM open_intervals d JOIN online_intervals o "  # noqa: S608
                f"ON o.device_id = d.device_id AND o.start = (SELECT x.start FROM {near}) "
                f"WHERE d.start >= {edge} AND o.{kept}"
            )
    return " UNION ALL ".join(parts)


def interval_devices(connection: Connection) -> int:
    """How many devices have stored intervals (each has one open interval: its latest)."""
    return int(connection.execute(text("SELECT count(*) FROM open_intervals")).scalar_one())


def interval_tallies(
    connection: Connection, *, start_us: int, step_us: int, until_us: int
) -> pl.DataFrame:
    """core.outages.tallies computed by the database (bound, k, n): a few hundred rows
    instead of every interval. Only bounds before `until_us` matter to the count."""
    frames = []
    for bound in ("start", "end"):  # our own column names, never input
        index = f'CASE WHEN "{bound}" <= :t0 THEN 0 ELSE ("{bound}" - :t0 + :step - 1) / :step END'
        found = fetch_frame(
            connection,
            f"SELECT {index} AS k, count(*) AS n FROM {_every_interval()} "  # noqa: S608
            f'WHERE "{bound}" < :until GROUP BY 1',
            {"t0": start_us, "step": step_us, "until": until_us},
            {"k": pl.Int64(), "n": pl.Int64()},
        )
        frames.append(found.select(pl.lit(bound).alias("bound"), "k", "n"))
    return pl.concat(frames)


def last_interval_end(connection: Connection) -> int | None:
    """The latest end of any stored interval (µs), None when there is none: an open one's,
    as each device's open interval is its latest."""
    found = connection.execute(text('SELECT max("end") FROM open_intervals')).scalar()
    return None if found is None else int(found)


def load_device_intervals(connection: Connection, device_id: str) -> pl.DataFrame:
    """One device's stored online intervals (INTERVALS), by start."""
    frame = fetch_frame(
        connection,
        f"SELECT * FROM {_every_interval(' WHERE device_id = :device')} ORDER BY start",  # noqa: S608
        {"device": device_id},
        INTERVAL_INTS,
    )
    return as_time(frame)


def devices_seen_since(connection: Connection, since_us: int) -> int:
    """How many devices were seen at or after `since_us` (their open interval ends then)."""
    found = connection.execute(
        text('SELECT count(*) FROM open_intervals WHERE "end" >= :since'), {"since": since_us}
    )
    return int(found.scalar_one())
