"""Large reads (rewards/db/bulk.py): on PostgreSQL the COPY text is parsed as it arrives,
cut only between rows, so quoted commas, quotes and newlines inside a value survive any
cut; in a read-only transaction the rows come as Arrow batches from a second connection
on the same moment. The frame equals the row-by-row read on both databases."""

from __future__ import annotations

import tracemalloc

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    select,
    text,
)

from rewards.db import bulk
from rewards.db.bulk import (
    _last_row_end,
    fetch_frame,
    libpq_conninfo,
    load_frame,
    read_frame,
    read_frames,
)
from rewards.db.engine import consistent_read, make_engine
from tests.conftest import Databases

SCHEMA: dict[str, pl.DataType] = {"n": pl.Int64(), "word": pl.String(), "flag": pl.Boolean()}
QUERY = "SELECT n, word, flag FROM bulk_probe ORDER BY n"


@pytest.fixture(scope="module")
def probe(databases: Databases) -> dict[str, Engine]:
    engines = {d: make_engine(databases.fresh(d)) for d in ("sqlite", "postgresql")}
    for engine in engines.values():
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE bulk_probe (n BIGINT, word TEXT, flag BOOLEAN)"))
    yield engines
    for engine in engines.values():
        engine.dispose()


words = st.lists(
    st.one_of(st.none(), st.text(st.sampled_from('ab,"\n\r x\\é'), max_size=6)), max_size=40
)


@settings(max_examples=40, deadline=None)
@given(values=words, size=st.integers(1, 64))
def test_a_read_cut_anywhere_gives_every_row_whole(
    probe: dict[str, Engine], values: list[str | None], size: int
) -> None:
    rows = [{"n": i, "word": w, "flag": i % 3 == 0} for i, w in enumerate(values)]
    for engine in probe.values():
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM bulk_probe"))
            if rows:
                connection.execute(text("INSERT INTO bulk_probe VALUES (:n, :word, :flag)"), rows)
        with engine.connect() as connection:
            expected = fetch_frame(connection, QUERY, {}, SCHEMA)
            found = read_frame(connection, QUERY, {}, SCHEMA, read_bytes=size)
            batches = list(
                read_frames(connection, QUERY, {}, SCHEMA, read_bytes=size, sqlite_rows=size)
            )
        with consistent_read(engine) as (connection, _):  # on PostgreSQL: through Arrow
            assert read_frame(connection, QUERY, {}, SCHEMA).equals(expected)
        assert found.equals(expected)
        # a batch at a time: bounded, every row once, in order
        assert pl.concat([pl.DataFrame(schema=SCHEMA), *batches]).equals(expected)
        if engine.dialect.name == "sqlite":
            assert len(batches) == -(-len(values) // size)
        assert found.get_column("word").to_list() == values


@settings(max_examples=200, deadline=None)
@given(values=words, cut=st.integers(0, 400))
def test_a_cut_falls_only_between_rows(values: list[str | None], cut: int) -> None:
    """COPY sends a row a message today; were blocks ever to split rows, the text is still
    cut only after a whole row, never at a newline inside a quoted value."""
    frame = pl.DataFrame({"word": values}, schema={"word": pl.String()})
    data = bytearray(frame.write_csv(include_header=False, quote_style="non_numeric").encode())
    end = _last_row_end(data[:cut])
    head = (
        pl.read_csv(bytes(data[:end]), has_header=False, schema=frame.schema)
        if end
        else frame.clear()
    )
    assert head.get_column("word").to_list() == values[: head.height]
    rest = (
        pl.read_csv(bytes(data[end:]), has_header=False, schema=frame.schema)
        if end < len(data)
        else frame.clear()
    )
    assert pl.concat([head, rest]).equals(frame)


def test_a_row_longer_than_the_read_buffer_is_read_whole(probe: dict[str, Engine]) -> None:
    big = 'x,"\n' * (600 << 10)  # 2.4 MiB: longer than the buffer of a small read
    rows = [{"n": 0, "word": "a", "flag": True}, {"n": 1, "word": big, "flag": False}]
    engine = probe["postgresql"]
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM bulk_probe"))
        connection.execute(text("INSERT INTO bulk_probe VALUES (:n, :word, :flag)"), rows)
    with engine.connect() as connection:
        found = read_frame(connection, QUERY, {}, SCHEMA, read_bytes=10)
    assert found.get_column("word").to_list() == ["a", big]


def test_a_small_read_does_not_pay_for_a_large_buffer(probe: dict[str, Engine]) -> None:
    """A query of a few rows used to zero a 65 MiB buffer first (31 ms on every page that
    read 30 epoch totals); the buffer now grows with what arrives."""
    engine = probe["postgresql"]
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM bulk_probe"))
        connection.execute(
            text("INSERT INTO bulk_probe VALUES (:n, :word, true)"),
            [{"n": i, "word": "x" * 50} for i in range(30)],
        )
    with engine.connect() as connection:
        read_frame(connection, QUERY, {}, SCHEMA)  # warm: drivers, polars
        tracemalloc.start()
        found = read_frame(connection, QUERY, {}, SCHEMA)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        many = read_frame(
            connection,
            "SELECT g AS n, repeat('y', 100) AS word, mod(g, 2) = 0 AS flag "
            "FROM generate_series(1, 200000) AS g",
            {},
            SCHEMA,
            read_bytes=1 << 20,
        )
    assert found.height == 30 and peak < 4 << 20
    assert many.height == 200_000 and many["n"].to_list() == list(range(1, 200_001))


def test_a_read_only_read_sees_its_transaction_s_moment_not_a_later_commit(
    probe: dict[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot's inputs are read in one read-only transaction; on PostgreSQL the large
    reads go through a second (Arrow) connection, which must see that transaction's rows:
    not a row committed after the transaction's first read."""
    engine = probe["postgresql"]
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM bulk_probe"))
        connection.execute(text("INSERT INTO bulk_probe VALUES (1, 'before', true)"))

    def no_copy(*_: object) -> None:
        raise AssertionError("a read-only transaction reads through Arrow, not COPY text")

    monkeypatch.setattr(bulk, "_copy_chunks", no_copy)
    with consistent_read(engine) as (connection, _):
        seen = fetch_frame(connection, QUERY, {}, SCHEMA)  # the transaction's moment is now
        with engine.begin() as other:
            other.execute(text("INSERT INTO bulk_probe VALUES (2, 'after', false)"))
        found = read_frame(connection, QUERY, {}, SCHEMA)
    assert found.equals(seen) and found.get_column("word").to_list() == ["before"]
    with engine.connect() as connection:
        assert fetch_frame(connection, QUERY, {}, SCHEMA).height == 2


def test_the_arrow_reader_connects_as_the_engine_does_whatever_the_password() -> None:
    """The second connection's libpq string is made from what the engine's driver is
    given: re-rendering the URL (the first version) left a space in a password, which
    libpq refused ("unexpected spaces"), and a `+` in an option that it misread."""
    engine = create_engine(
        "postgresql+psycopg://us%40er:p%40ss%3Aw%2Frd%2Bx%20y%25@db.example:5433/rew"
        "?sslmode=require&application_name=a%20b"
    )
    assert conninfo_to_dict(libpq_conninfo(engine)) == {
        "host": "db.example",
        "port": "5433",
        "dbname": "rew",
        "user": "us@er",
        "password": "p@ss:w/rd+x y%",
        "sslmode": "require",
        "application_name": "a b",
    }
    socket = create_engine("postgresql+psycopg://postgres@/rewards?host=/var/run/postgresql")
    assert conninfo_to_dict(libpq_conninfo(socket))["host"] == "/var/run/postgresql"


@settings(max_examples=20, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.text(st.sampled_from('ab,"\n\\é\x01'), max_size=8), st.binary(max_size=40)),
        max_size=30,
    )
)
def test_loaded_rows_come_back_as_they_were_binary_values_included(
    probe: dict[str, Engine], rows: list[tuple[str, bytes]]
) -> None:
    """load_frame of bytes: binary COPY on PostgreSQL (bytes as they are), executemany on
    SQLite."""
    frame = pl.DataFrame(
        {"n": range(len(rows)), "word": [w for w, _ in rows], "blob": [b for _, b in rows]},
        schema={"n": pl.Int64, "word": pl.String, "blob": pl.Binary},
    )
    table = Table(
        "copy_probe", MetaData(), Column("n", BigInteger), Column("word", Text),
        Column("blob", LargeBinary),
    )  # fmt: skip
    for engine in probe.values():
        with engine.begin() as connection:
            table.drop(connection, checkfirst=True)
            table.create(connection)
            load_frame(connection, table.name, frame)
        with engine.connect() as connection:
            back = connection.execute(select(table).order_by(table.c.n)).all()
        assert [(w, bytes(b)) for _, w, b in back] == rows
