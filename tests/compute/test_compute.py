"""A season computed shard by shard from split files (rewards/compute.py) equals
`device_epochs` over the whole fleet, byte for byte, for any shard count and whoever runs
the tasks; the files hold each device in exactly one shard."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.compute import (
    SPILL,
    ShardedSeason,
    compute,
    runs,
    snapshot_rows_by_shard,
    spill,
    split_inputs,
)
from rewards.core import (
    HEARTBEATS,
    INCIDENT_VERSIONS,
    INTERVALS,
    device_epochs,
    fingerprint,
    incident_versions_near,
    snapshot_rows,
)
from rewards.core.shards import FINE_BUCKETS, bucket
from rewards.executors import InProcess, ProcessPool
from rewards.frozen import freeze
from tests.core.test_eligibility_properties import P, incident, meta, run
from tests.core.test_row_summary import owner_history, owners_frame
from tests.core.test_sharded import frames


def sharded(
    inputs: dict[str, pl.DataFrame], root: Path, shards: int, **kw: object
) -> ShardedSeason:
    season = split_inputs(
        root,
        shards,
        inputs["intervals"].lazy(),
        devices=inputs["devices"].lazy(),
        incident_versions=inputs["incident_versions"].lazy(),
        rows_per_part=kw.pop("rows_per_part", 7),  # type: ignore[arg-type]
    )
    return compute(season, P, incidents=inputs["incidents"], **kw)  # type: ignore[arg-type]


def whole(inputs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    rest = {k: v for k, v in inputs.items() if k != "intervals"}
    return device_epochs(inputs["intervals"], P, **rest)


def gathered(season: ShardedSeason) -> pl.DataFrame:
    return pl.concat(list(season.epochs(range(P.epoch_count))))


@settings(max_examples=40, deadline=None)
@given(
    runs=st.lists(run, max_size=8),
    raw_incidents=st.lists(incident, max_size=3, unique_by=lambda i: i["incident_id"]),
    meta=meta,
    shards=st.sampled_from([1, 2, 7]),
)
def test_split_files_give_the_whole_fleets_results(runs, raw_incidents, meta, shards) -> None:  # type: ignore[no-untyped-def]
    inputs = frames(runs, raw_incidents, meta)
    with tempfile.TemporaryDirectory() as tmp:
        result = gathered(sharded(inputs, Path(tmp) / "season", shards))
    expected = whole(inputs)
    assert result.equals(expected)
    assert result.schema == expected.schema


def _fleet() -> dict[str, pl.DataFrame]:
    from rewards.core import online_intervals

    beats = [
        (f"gpu-{i:03d}", P.start + timedelta(minutes=m + (i % 7) * 90), f"b{m // 300}", "1.10")
        for i in range(60)
        for m in range(0, 24 * 60, 1 + i % 3)
    ]
    heartbeats = pl.DataFrame(beats, schema=dict(HEARTBEATS), orient="row")
    return frames([], [], {}) | {"intervals": online_intervals(heartbeats, P)}


def test_each_device_lands_in_the_shard_of_its_iceberg_bucket_only(tmp_path: Path) -> None:
    inputs = _fleet()
    season = sharded(inputs, tmp_path / "season", 5)
    seen: list[str] = []
    for shard in range(5):
        ids = season.read("intervals", shard, dict(INTERVALS)).get_column("device_id").unique()
        assert all(bucket(d, FINE_BUCKETS) * 5 // FINE_BUCKETS == shard for d in ids)
        seen += ids.to_list()
    assert sorted(seen) == sorted(inputs["intervals"].get_column("device_id").unique())


def test_a_process_pool_gives_the_same_bytes(tmp_path: Path) -> None:
    inputs = _fleet()
    expected = whole(inputs)
    with ProcessPool(2) as pool:
        result = gathered(sharded(inputs, tmp_path / "season", 3, executor=pool))
    assert result.equals(expected)
    assert gathered(sharded(inputs, tmp_path / "again", 3, executor=InProcess())).equals(expected)


def test_a_second_split_replaces_the_first(tmp_path: Path) -> None:
    inputs = _fleet()
    sharded(inputs, tmp_path / "season", 7)
    again = sharded(inputs, tmp_path / "season", 2)
    assert sorted(p.name for p in (tmp_path / "season" / "intervals").iterdir()) == [
        "shard=0",
        "shard=1",
    ]
    assert gathered(again).equals(whole(inputs))


def test_shard_counts_out_of_range_are_refused(tmp_path: Path) -> None:
    for shards in (0, FINE_BUCKETS + 1):
        with pytest.raises(ValueError, match=f"from 1 to {FINE_BUCKETS}"):
            split_inputs(tmp_path / "s", shards, _fleet()["intervals"].lazy())
    with pytest.raises(ValueError, match="at least 1"):
        ProcessPool(0)


@settings(max_examples=30, deadline=None)
@given(
    runs=st.lists(run, max_size=8),
    raw_incidents=st.lists(incident, max_size=2, unique_by=lambda i: i["incident_id"]),
    meta=meta,
    history=owner_history,
    shards=st.sampled_from([1, 2, 7]),
    first=st.integers(0, 2),
    devices_a_range=st.sampled_from([1, 2, 1000]),
)
def test_snapshot_rows_by_shard_stream_in_the_canonical_order(  # type: ignore[no-untyped-def]
    runs, raw_incidents, meta, history, shards, first, devices_a_range
) -> None:
    """The shards' snapshot rows, put in order a range of devices at a time, are
    `snapshot_rows` of the whole fleet's results: the same rows, owners and order
    (device_id, then epoch), for any epochs and range size."""
    inputs = frames(runs, raw_incidents, meta)
    owners = owners_frame(history)
    epochs = range(first, P.epoch_count)
    expected = snapshot_rows(
        whole(inputs), owners, epochs=epochs, epoch_length_us=P.epoch_length_us
    )
    with tempfile.TemporaryDirectory() as tmp:
        season = split_inputs(
            Path(tmp) / "s",
            shards,
            inputs["intervals"].lazy(),
            devices=inputs["devices"].lazy(),
            incident_versions=inputs["incident_versions"].lazy(),
            owners=owners.lazy(),
            rows_per_part=5,
        )
        compute(season, P, incidents=inputs["incidents"])
        snapshot_rows_by_shard(season, P, epochs, devices_a_range=devices_a_range)
        batches = list(season.rows_in_order())
        if devices_a_range == 1:
            assert len(batches) == expected.get_column("device_id").n_unique()
    result = pl.concat(batches) if batches else expected.clear()
    assert result.equals(expected)
    assert result.schema == expected.schema


@settings(max_examples=30, deadline=None)
@given(
    runs=st.lists(run, max_size=8),
    raw_incidents=st.lists(incident, max_size=3, unique_by=lambda i: i["incident_id"]),
    meta=meta,
    history=owner_history,
    shards=st.sampled_from([1, 2, 7]),
)
def test_inputs_frozen_by_shard_have_the_whole_inputs_fingerprint(  # type: ignore[no-untyped-def]
    runs, raw_incidents, meta, history, shards
) -> None:
    """Intervals streamed in as a database read yields them, each shard's incident versions
    derived from its own heartbeats: the fingerprint is that of the whole frames, the
    versions are the whole fleet's, and a task run twice (a retried worker) changes
    nothing."""
    inputs = frames(runs, raw_incidents, meta)
    heartbeats = pl.DataFrame([r for c in runs for r in c], schema=dict(HEARTBEATS), orient="row")
    owners = owners_frame(history)
    versions = incident_versions_near(inputs["incidents"], inputs["intervals"], heartbeats, P)
    expected = fingerprint(
        {
            "intervals": inputs["intervals"],
            "incidents": inputs["incidents"],
            "incident_versions": versions,
            "devices": inputs["devices"],
            "owners": owners,
        }
    )
    small = {k: inputs[k] for k in ("incidents", "devices")} | {"owners": owners}
    with tempfile.TemporaryDirectory() as tmp:
        season = split_inputs(
            Path(tmp) / "s",
            shards,
            inputs["intervals"].sample(fraction=1.0, shuffle=True, seed=1).iter_slices(5),
            devices=inputs["devices"].lazy(),
            owners=owners.lazy(),
            near=heartbeats.lazy(),
            rows_per_part=5,
        )
        assert freeze(season, P, **small) == expected
        assert freeze(season, P, **small, executor=InProcess()) == expected
        found = [season.read("versions", s, dict(INCIDENT_VERSIONS)) for s in range(shards)]
        for shard in range(shards):
            assert not list(season.shard_dir("intervals", shard).glob("part-*"))
    key = ["incident_id", "device_id"]
    assert pl.concat(found).sort(key).equals(versions.sort(key))


def test_a_freeze_task_retried_after_it_sorted_but_before_it_cleaned_up_counts_once(
    tmp_path: Path,
) -> None:
    """A worker killed between writing a shard's sorted file and removing its unsorted
    parts: the retry reads the sorted file, not both, and removes the parts."""
    inputs = _fleet()
    small = {"incidents": inputs["incidents"], "devices": inputs["devices"]}
    owners = owners_frame([])
    expected = freeze(
        split_inputs(tmp_path / "a", 3, inputs["intervals"].iter_slices(50), rows_per_part=50),
        P,
        **small,
        owners=owners,
    )
    season = split_inputs(tmp_path / "b", 3, inputs["intervals"].iter_slices(50), rows_per_part=50)
    folder = season.shard_dir("intervals", 1)
    assert len(list(folder.glob(f"part-*{SPILL}"))) > 1
    whole = season.read("intervals", 1, dict(INTERVALS)).sort("device_id", "start")
    spill(whole, folder / f"sorted{SPILL}")  # the killed attempt got this far
    assert freeze(season, P, **small, owners=owners) == expected
    assert sorted(p.name for p in folder.iterdir()) == [f"sorted{SPILL}"]
    assert season.read("intervals", 1, dict(INTERVALS)).equals(whole)


@settings(max_examples=50, deadline=None)
@given(keys=st.lists(st.integers(0, 4), max_size=30), presorted=st.booleans())
def test_runs_are_the_rows_of_each_key_in_their_order(keys: list[int], presorted: bool) -> None:
    """Sliced (sorted keys) or partitioned (any order), each distinct key comes once,
    with exactly its rows in their order."""
    keys = sorted(keys) if presorted else keys
    frame = pl.DataFrame({"row": list(range(len(keys))), "text": [f"r{k}" for k in keys]})
    found = list(runs(frame, pl.Series(keys, dtype=pl.Int64)))
    assert sorted(k for k, _ in found) == sorted(set(keys))
    for key, part in found:
        assert part.get_column("row").to_list() == [i for i, k in enumerate(keys) if k == key]
        assert part.columns == frame.columns
