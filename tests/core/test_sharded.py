"""`device_epochs` shard by shard equals `device_epochs` over the whole fleet, byte for byte,
for any shard count, on random fleets with incidents, metadata and ties at the cut-off."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core import (
    DEVICES,
    HEARTBEATS,
    INCIDENTS,
    device_epochs,
    incident_versions,
    online_intervals,
)
from rewards.core.sharded import sharded_device_epochs
from tests.core.test_eligibility_properties import P, incident, meta, run


def frames(runs, raw_incidents, meta):  # type: ignore[no-untyped-def]
    records = [r for chunk in runs for r in chunk]
    heartbeats = pl.DataFrame(records, schema=dict(HEARTBEATS), orient="row")
    incidents = pl.DataFrame(
        [
            {k: i[k] for k in INCIDENTS if k != "end"}
            | {"end": i["start"] + timedelta(minutes=i["length_min"])}
            for i in raw_incidents
        ],
        schema=dict(INCIDENTS),
    )
    devices = pl.DataFrame(
        [
            {"device_id": d, "gpu_model": m, "suspended": s, "valid_from": None, "valid_to": None}
            for d, (m, s) in meta.items()
        ],
        schema=dict(DEVICES),
    )
    return {
        "intervals": online_intervals(heartbeats, P),
        "incidents": incidents,
        "devices": devices,
        "incident_versions": incident_versions(heartbeats, incidents),
    }


@settings(max_examples=60, deadline=None)
@given(
    runs=st.lists(run, max_size=8),
    raw_incidents=st.lists(incident, max_size=3, unique_by=lambda i: i["incident_id"]),
    meta=meta,
    shards=st.sampled_from([1, 2, 7]),
)
def test_any_shard_count_gives_the_whole_fleets_results(runs, raw_incidents, meta, shards) -> None:  # type: ignore[no-untyped-def]
    inputs = frames(runs, raw_incidents, meta)
    intervals = inputs.pop("intervals")
    whole = device_epochs(intervals, P, **inputs)
    sharded = sharded_device_epochs(intervals, P, shards=shards, **inputs)
    assert sharded.equals(whole)
    assert sharded.schema == whole.schema  # the same types too: the same bytes exported


def test_ties_at_the_cut_off_split_across_shards_go_by_device_id() -> None:
    """Many devices with the same counted time in one epoch: every remainder ties, and the
    units left over go to the smallest ids in byte order whichever shard holds them."""
    beats = [
        (f"gpu-{i:03d}", P.start + timedelta(minutes=m), "b1", "1.10")
        for i in range(40)
        for m in range(0, 60)
    ]
    heartbeats = pl.DataFrame(beats, schema=dict(HEARTBEATS), orient="row")
    intervals = online_intervals(heartbeats, P)
    whole = device_epochs(intervals, P)
    paid = whole.filter(pl.col("epoch") == 0).get_column("reward")
    assert paid.n_unique() == 2  # 1,000,003 over 40: some get one unit more, by id
    for shards in (2, 7):
        assert sharded_device_epochs(intervals, P, shards=shards).equals(whole)
