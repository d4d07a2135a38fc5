"""The API's device-epoch is the core's device-epoch: the same columns, order and types."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from rewards.api.schemas import DeviceEpochOut
from rewards.core.eligibility_view import STORED_ROWS
from rewards.core.frames import RESULTS, TIME

PYTHON_TYPES: dict[pl.DataType, object] = {
    pl.String(): str,
    pl.Int64(): int,
    pl.Float64(): float,
    pl.Boolean(): bool,
    TIME: datetime,
    pl.List(pl.String()): list[str],
}


def test_a_device_epoch_in_the_api_has_exactly_the_stored_columns_in_order() -> None:
    assert tuple(DeviceEpochOut.model_fields) == tuple(c for c in STORED_ROWS if c != "owner_id")


def test_each_device_epoch_field_has_the_type_of_its_column() -> None:
    dtypes = {**RESULTS, "in_progress": pl.Boolean(), "explanation": pl.String()}
    for name, field in DeviceEpochOut.model_fields.items():
        assert field.annotation == PYTHON_TYPES[dtypes[name]], name
