"""A device's rows are found in the snapshot parts whose device range holds it, in the
byte order the parts are cut in, whatever the database's collation. Under a collation
that sets punctuation aside (as glibc's en_US does; here ICU's "shifted"), "-" and "."
sort apart from byte order, and the part holding 'a-c' (from 'a-b' to 'a.b') was not
found on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import polars as pl
import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from rewards.core import EPOCH_TOTALS, SNAPSHOT_ROWS, SUPPLIERS, empty
from rewards.db import snapshots as store
from rewards.db.migrate import upgrade
from rewards.db.tables import Snapshot
from tests.conftest import _PG, RUN, Databases, _pg_admin, drop_pg_database, pg_url

IDS = ["a-b", "a-c", "a.a", "a.b"]  # byte order; ICU puts 'a.a' and 'a.b' first


@pytest.fixture
def icu_database(databases: Databases) -> Iterator[str]:
    if _PG:
        pytest.skip(f"{_PG['problem']}; skipping the PostgreSQL half")
    name = f"rewards_icu_{RUN}"
    with _pg_admin().connect() as connection:
        connection.execute(
            text(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                "ICU_LOCALE 'en-US-u-ka-shifted' LOCALE 'C.UTF-8'"
            )
        )
    try:
        upgrade(pg_url(name))
        yield pg_url(name)
    finally:
        drop_pg_database(name)


def _header() -> Snapshot:
    return Snapshot(
        season="s", version=1, status="draft", epoch_first=0, epoch_last=0, policy="{}",
        policy_hash="p", input_fingerprint="f", code_version="c", trigger="manual",
        triggered_by="t", reason="r", device_epoch_rows=len(IDS), devices=len(IDS),
        suppliers=0, eligible_device_epochs=0, total_pool=0, total_paid=0,
        total_unassigned=0, content_hash="h", merkle_root="m",
        created_at=datetime(2024, 5, 1, tzinfo=UTC),
    )  # fmt: skip


def test_a_device_is_found_in_its_part_under_an_icu_collation(icu_database: str) -> None:
    engine = create_engine(icu_database)
    with engine.connect() as connection:
        order = connection.execute(
            text("SELECT x FROM unnest(CAST(:ids AS text[])) AS x ORDER BY x"), {"ids": IDS}
        ).scalars()
        assert list(order) != IDS  # the collation really sorts apart from byte order
    rows = (
        pl.DataFrame({"device_id": IDS, "epoch": [0] * len(IDS)})
        .with_columns(
            pl.lit(None, dtype).alias(name)
            for name, dtype in SNAPSHOT_ROWS.items()
            if name not in ("device_id", "epoch")
        )
        .select(list(SNAPSHOT_ROWS))
    )
    with Session(engine) as session:
        header = store.insert(session, _header(), [rows], empty(SUPPLIERS), empty(EPOCH_TOTALS))
        session.commit()
        assert header.id is not None
        found = store.device_rows(session.connection(), header.id, "a-c")
    engine.dispose()
    assert found.get_column("device_id").to_list() == ["a-c"]
