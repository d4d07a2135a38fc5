"""Bulk loading of frames into tables, the fast way each dialect offers."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import polars as pl
import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

_COPY_ROWS = 500_000


def load_frame(connection: Connection, table: str, frame: pl.DataFrame) -> None:
    """Append `frame`'s rows to `table` (columns by name): COPY on PostgreSQL, a prepared
    executemany on SQLite. `table` is one of our own table names, never user input.

    A frame with binary columns (compressed documents) goes by binary COPY, where CSV
    would spell the bytes out in hex: 100,000 documents of 3 KB took 1.6 s instead of
    2.3 s as executemany. Its columns' types must then be the table's (see `_BINARY`)."""
    if frame.is_empty():
        return
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    if connection.dialect.name == "postgresql":
        raw = connection.connection.driver_connection
        assert raw is not None
        binary = pl.Binary() in frame.schema.dtypes()
        form = "BINARY" if binary else "csv"
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT {form})") as copy,
        ):
            if binary:
                copy.set_types([_BINARY[type(t)] for t in frame.schema.dtypes()])
                for row in frame.iter_rows():
                    copy.write_row(row)
                return
            for chunk in frame.iter_slices(_COPY_ROWS):  # bounded memory for big frames
                copy.write(chunk.write_csv(include_header=False))
        return
    marks = ", ".join("?" for _ in frame.columns)
    connection.exec_driver_sql(
        f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 - fixed identifiers
        frame.rows(),
    )


# The PostgreSQL type a binary COPY sends a polars column as (text also fills a varchar).
_BINARY: dict[type[pl.DataType], str] = {
    pl.Int32: "int4",
    pl.Int64: "int8",
    pl.Float64: "float8",
    pl.Boolean: "bool",
    pl.String: "text",
    pl.Binary: "bytea",
}


def fetch_frame(
    connection: Connection, sql: str, params: Mapping[str, object], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """Rows of a bound-parameter query as a frame with `schema`."""
    rows = connection.execute(text(sql), dict(params)).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=dict(schema), orient="row")


def read_frame(
    connection: Connection,
    sql: str,
    params: Mapping[str, object],
    schema: dict[str, pl.DataType],
    *,
    read_bytes: int = 64 << 20,
) -> pl.DataFrame:
    """Like `fetch_frame`, for large results (see `read_frames`), as one frame."""
    frames = list(read_frames(connection, sql, params, schema, read_bytes=read_bytes))
    if not frames:
        return pl.DataFrame(schema=dict(schema))
    return pl.concat(frames, rechunk=False)


def read_frames(
    connection: Connection,
    sql: str,
    params: Mapping[str, object],
    schema: dict[str, pl.DataType],
    *,
    read_bytes: int = 64 << 20,
    sqlite_rows: int = 500_000,
) -> Iterator[pl.DataFrame]:
    """The rows of a large query as frames with `schema`, a batch at a time, so a caller
    that writes them on never holds them all: on PostgreSQL the rows stream through
    `COPY (query) TO STDOUT` as CSV straight into polars instead of one Python tuple per
    row, parsed every `read_bytes` (at fleet size the CSV text of 44M intervals took 4 GB
    when it was gathered whole before parsing); on SQLite `sqlite_rows` rows at a time.

    `sql` uses :name parameters (bound by psycopg); schema columns may be strings,
    integers, floats or booleans.
    """
    if connection.dialect.name != "postgresql":
        result = connection.execution_options(yield_per=sqlite_rows).execute(
            text(sql), dict(params)
        )
        for rows in result.partitions(sqlite_rows):
            yield pl.DataFrame([tuple(r) for r in rows], schema=dict(schema), orient="row")
        return
    if not params and connection.get_execution_options().get("postgresql_readonly"):
        yield from _arrow_frames(connection, sql, schema)
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    query = re.sub(r"(?<!:):([A-Za-z_]\w*)", r"%(\1)s", sql.replace("%", "%%"))
    booleans = [c for c, t in schema.items() if t == pl.Boolean]
    text_schema = {c: (pl.String() if c in booleans else t) for c, t in schema.items()}
    copy = f"COPY ({query}) TO STDOUT WITH (FORMAT csv)"
    for chunk in _copy_chunks(raw, copy, dict(params), read_bytes):
        frame = pl.read_csv(chunk, has_header=False, schema=text_schema)
        yield frame.with_columns(pl.col(c) == "t" for c in booleans)


def _arrow_frames(
    connection: Connection, sql: str, schema: dict[str, pl.DataType]
) -> Iterator[pl.DataFrame]:
    """The rows of `sql` as Arrow batches from a second connection (ADBC: a binary COPY
    decoded in C, where psycopg's CSV costs a Python step per row) that imports this
    read-only transaction's snapshot, so it reads exactly what `connection` would. A
    600,000-GPU season's 44M intervals read in 16.8 s instead of 30.9 s; the database's
    part is smaller too (binary rows are cheaper to make than CSV text)."""
    # here, not at the top: pyarrow costs every process 86 MiB and 0.3 s to import, and
    # most (the API, the pages, short commands) never read a season
    import adbc_driver_postgresql.dbapi as adbc  # noqa: PLC0415

    snapshot = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
    with (
        adbc.connect(libpq_conninfo(connection.engine), autocommit=True) as other,
        other.cursor() as cursor,
    ):
        cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # the server's own id
        cursor.execute(sql)
        for batch in cursor.fetch_record_batch():
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            yield frame.select(pl.col(c).cast(t) for c, t in schema.items())
        cursor.execute("COMMIT")


def libpq_conninfo(engine: Engine) -> str:
    """The libpq connection string of the server and database `engine` connects to, as
    the engine's own driver is given them (host, port, database, user, password, and the
    URL's libpq options such as sslmode). Not the URL re-rendered: SQLAlchemy's text of a
    URL leaves a space or a `+` in a password as it is, which libpq rejects or misreads."""
    _, options = engine.dialect.create_connect_args(engine.url)
    known = {d.keyword.decode() for d in psycopg.pq.Conninfo.get_defaults()}
    return make_conninfo("", **{k: v for k, v in options.items() if k in known})


def _copy_chunks(
    raw: psycopg.Connection[Any], copy: str, params: dict[str, object], read_bytes: int
) -> Iterator[bytes]:
    """The text of a `COPY ... TO STDOUT` in chunks of about `read_bytes`, each ending at
    a row's end. psycopg hands the text over a row at a time (a season's intervals are
    44M blocks): each is copied into one buffer at once and let go, as holding them (a
    list of blocks joined later) made reading 2.7x slower. The buffer starts small and
    doubles as rows arrive, so a query of 30 rows does not pay for zeroing 65 MiB (31 ms a
    query when it was made whole up front)."""
    buffer = bytearray(min(read_bytes, 64 << 10) + (1 << 10))
    view, used = memoryview(buffer), 0
    with raw.cursor() as cursor, cursor.copy(copy, params) as rows:
        for block in rows:
            size = len(block)
            if used + size > len(buffer):  # no room left: at least double
                view.release()
                buffer.extend(bytes(max(len(buffer), used + size - len(buffer))))
                view = memoryview(buffer)
            view[used : used + size] = block
            used += size
            if used >= read_bytes:
                end = _last_row_end(buffer, used)
                yield bytes(view[:end])
                view[: used - end] = view[end:used]
                used -= end
    if used:
        yield bytes(view[:used])


def _last_row_end(data: bytes | bytearray, stop: int | None = None) -> int:
    """The end of the last whole CSV row in `data[:stop]` (0 if none): after a newline
    with an even number of quotes before it (a quoted field may hold a newline; a quote
    inside a field is doubled)."""
    stop = len(data) if stop is None else stop
    end = data.rfind(b"\n", 0, stop)
    while end >= 0 and data.count(b'"', 0, end) % 2:
        end = data.rfind(b"\n", 0, end)
    return end + 1


def insert_missing(connection: Connection, table: Any, key: str, rows: list[dict[str, Any]]) -> int:
    """Insert `rows` into `table` except those whose `key` already exists; returns how many
    were inserted. Safe against concurrent inserts of the same key on both dialects."""
    if not rows:
        return 0
    if connection.dialect.name == "postgresql":
        statement: Any = pg_insert(table).on_conflict_do_nothing(index_elements=[key])
    else:
        statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])
    return int(connection.execute(statement, rows).rowcount)
