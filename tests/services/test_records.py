"""The doors get plain records, never ORM rows, and every record says all its row says."""

from __future__ import annotations

import dataclasses

import pytest
from sqlmodel import SQLModel

from rewards.db.tables import Alert, Incident, JobRun, Snapshot
from rewards.services.records import AlertRecord, IncidentRecord, JobRunRecord, SnapshotRecord

PAIRS: list[tuple[type, type[SQLModel]]] = [
    (SnapshotRecord, Snapshot),
    (IncidentRecord, Incident),
    (AlertRecord, Alert),
    (JobRunRecord, JobRun),
]


@pytest.mark.parametrize(("record", "table"), PAIRS, ids=lambda t: t.__name__)
def test_each_record_has_exactly_the_columns_of_its_table(
    record: type, table: type[SQLModel]
) -> None:
    columns = [c.name for c in table.__table__.columns]  # type: ignore[attr-defined]
    assert [f.name for f in dataclasses.fields(record)] == columns


@pytest.mark.parametrize(("record", "table"), PAIRS, ids=lambda t: t.__name__)
def test_a_record_is_frozen(record: type, table: type[SQLModel]) -> None:
    assert record.__dataclass_params__.frozen  # type: ignore[attr-defined]
