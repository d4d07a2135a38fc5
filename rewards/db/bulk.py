"""Bulk loading of frames into tables, the fast way each dialect offers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
from sqlalchemy import Connection


def load_frame(connection: Connection, table: str, frame: pl.DataFrame) -> None:
    """Append `frame`'s rows to `table` (columns by name): COPY on PostgreSQL, a prepared
    executemany on SQLite. `table` is one of our own table names, never user input."""
    if frame.is_empty():
        return
    columns = ", ".join(f'"{c}"' for c in frame.columns)
    if connection.dialect.name == "postgresql":
        raw = connection.connection.driver_connection
        assert raw is not None
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {table} ({columns}) FROM STDIN WITH (FORMAT csv)") as copy,
        ):
            copy.write(frame.write_csv(include_header=False))
        return
    marks = ", ".join("?" for _ in frame.columns)
    connection.exec_driver_sql(
        f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 - fixed identifiers
        frame.rows(),
    )


def fetch_frame(
    connection: Connection, sql: str, params: Mapping[str, object], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """Rows of a bound-parameter query as a frame with `schema`."""
    from sqlalchemy import text

    rows = connection.execute(text(sql), dict(params)).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=dict(schema), orient="row")


def insert_missing(connection: Connection, table: Any, key: str, rows: list[dict[str, Any]]) -> int:
    """Insert `rows` into `table` except those whose `key` already exists; returns how many
    were inserted. Safe against concurrent inserts of the same key on both dialects."""
    if not rows:
        return 0
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(table).on_conflict_do_nothing(index_elements=[key])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])
    return int(connection.execute(statement, rows).rowcount)
