"""A snapshot's content hash, supplier and epoch totals and counts made from its rows in
parts (`summarize_rows`) equal those made from the rows whole, wherever the parts split
(inside a device's rows, inside an owner's devices, or not at all)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core import (
    OWNERS,
    SNAPSHOT_ROWS,
    canonical_csv,
    canonical_csv_pairs,
    content_hash,
    device_epochs,
    epoch_totals,
    export_rows,
    slices,
    snapshot_rows,
    summarize_rows,
    supplier_totals,
)
from tests.core.test_eligibility_properties import DEVICE_IDS, P, incident, meta, run
from tests.core.test_sharded import frames

owner_history = st.lists(
    st.tuples(
        st.sampled_from([*DEVICE_IDS, "gpu-registry-only", "gpu-owner-only"]),
        st.sampled_from(["alice", "bob", "Bob"]),
        st.integers(-2, 3),  # valid from this many days after the season's start (or open)
    ),
    max_size=6,
)


def owners_frame(history: list[tuple[str, str, int]]) -> pl.DataFrame:
    """An ownership history: a device's versions each end when its next one starts."""
    firsts = sorted({(d, day): o for d, o, day in history}.items())
    rows = []
    for i, ((device, day), owner) in enumerate(firsts):
        later = firsts[i + 1][0] if i + 1 < len(firsts) and firsts[i + 1][0][0] == device else None
        start = None if day < 0 else P.start + timedelta(days=day)
        end = None if later is None else P.start + timedelta(days=later[1])
        rows.append({"device_id": device, "owner_id": owner, "valid_from": start, "valid_to": end})
    return pl.DataFrame(rows, schema=dict(OWNERS))


@settings(max_examples=80, deadline=None)
@given(
    runs=st.lists(run, max_size=8),
    raw_incidents=st.lists(incident, max_size=2, unique_by=lambda i: i["incident_id"]),
    meta=meta,
    history=owner_history,
    cuts=st.lists(st.integers(0, 40), max_size=6),
    first=st.integers(0, 3),
)
def test_the_summary_of_rows_in_parts_is_the_summary_of_the_whole(  # type: ignore[no-untyped-def]
    runs, raw_incidents, meta, history, cuts, first
) -> None:
    inputs = frames(runs, raw_incidents, meta)
    intervals = inputs.pop("intervals")
    epochs = range(first, P.epoch_count)
    rows = snapshot_rows(
        device_epochs(intervals, P, **inputs),
        owners_frame(history),
        epochs=epochs,
        epoch_length_us=P.epoch_length_us,
    )
    bounds = sorted({0, rows.height, *(min(c, rows.height) for c in cuts)})
    parts = [rows.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    found = summarize_rows(
        parts, epochs=epochs, pool_per_epoch=P.pool_per_epoch, decimals=P.token_decimals
    )
    assert found.digest == content_hash(canonical_csv(rows, P.token_decimals))
    assert found.suppliers.equals(supplier_totals(rows))
    assert found.totals.equals(epoch_totals(rows, epochs, P.pool_per_epoch))
    assert found.rows == rows.height
    assert found.devices == rows.get_column("device_id").n_unique()
    assert found.eligible == rows.get_column("eligible").sum()


@settings(max_examples=200)
@given(
    lengths=st.lists(st.integers(0, 9), max_size=8),
    size=st.integers(1, 6),
)
def test_slices_cut_the_frames_concatenation_in_equal_parts(lengths: list[int], size: int) -> None:
    frames, at = [], 0
    for n in lengths:
        frames.append(pl.DataFrame({"i": list(range(at, at + n))}, schema={"i": pl.Int64}))
        at += n
    parts = list(slices(frames, size))
    assert [p.height for p in parts[:-1]] == [size] * (len(parts) - 1)
    assert all(0 < p.height <= size for p in parts)
    whole = pl.concat(parts).get_column("i").to_list() if parts else []
    assert whole == list(range(at))


@settings(max_examples=60, deadline=None)
@given(
    runs=st.lists(run, max_size=6),
    cuts=st.lists(st.integers(0, 30), max_size=6),
    ahead=st.integers(1, 4),
)
def test_csv_pairs_made_ahead_on_threads_are_the_parts_in_order_and_the_whole_csv(  # type: ignore[no-untyped-def]
    runs, cuts, ahead
) -> None:
    inputs = frames(runs, [], {})
    rows = snapshot_rows(
        device_epochs(inputs.pop("intervals"), P, **inputs),
        owners_frame([]),
        epochs=range(P.epoch_count),
        epoch_length_us=P.epoch_length_us,
    )
    bounds = sorted({0, rows.height, *(min(c, rows.height) for c in cuts)})
    parts = [rows.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    pairs = list(canonical_csv_pairs(iter(parts), P.token_decimals, ahead))
    tables = [table for table, _ in pairs]
    if parts:  # each part as export rows, in order
        assert len(tables) == len(parts)
        assert all(t is not None and t.equals(export_rows(p, P.token_decimals))
                   for t, p in zip(tables, parts, strict=True))  # fmt: skip
    else:
        assert tables == [None]
    assert b"".join(data for _, data in pairs) == canonical_csv(rows, P.token_decimals)


def test_csv_pairs_stop_when_the_caller_stops_and_pass_on_the_rows_failure() -> None:
    rows = pl.DataFrame(schema=dict(SNAPSHOT_ROWS))
    pulled: list[int] = []

    def endless() -> Iterator[pl.DataFrame]:
        for i in itertools.count():
            pulled.append(i)
            yield rows

    made = canonical_csv_pairs(endless(), 6, ahead=2)
    next(made)
    made.close()  # nothing keeps pulling once the caller is done
    assert len(pulled) == 3

    def failing() -> Iterator[pl.DataFrame]:
        yield rows
        raise OSError("the database went away")

    with pytest.raises(OSError, match="went away"):
        list(canonical_csv_pairs(failing(), 6))
