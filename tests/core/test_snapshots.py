"""A snapshot's content: owners at epoch start, canonical bytes, totals, fingerprint, diff."""

from __future__ import annotations

import random
from datetime import timedelta
from itertools import pairwise

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core import device_epochs, online_intervals
from rewards.core.canonical_export import canonical_csv, content_hash, reward_decimal
from rewards.core.diffs import adjustments, diff_rows, diff_suppliers, summarize
from rewards.core.epochs import closed_epochs
from rewards.core.fingerprint import combine_fingerprint, fingerprint, fingerprint_parts
from rewards.core.frames import TIME, from_us, increasing, to_us
from rewards.core.merkle import merkle_proof, merkle_root, payout_leaves, verify_proof
from rewards.core.shards import device_shards
from rewards.core.snapshot_rows import (
    OWNERS,
    epoch_totals,
    owners_at_epochs,
    snapshot_rows,
    supplier_totals,
)
from tests.builders import at, concat, heartbeats, policy

DAY_US = 86_400_000_000


def owners(*rows: tuple[str, str, str | None, str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "device_id": d,
                "owner_id": o,
                "valid_from": at(f) if f else None,
                "valid_to": at(t) if t else None,
            }
            for d, o, f, t in rows
        ],
        schema=dict(OWNERS),
    )


def grid(*rows: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {"device_id": [d for d, _ in rows], "epoch_start": [at(s) for _, s in rows]},
        schema={"device_id": pl.String(), "epoch_start": TIME},
    )


def test_owner_is_the_one_of_record_at_the_epoch_start() -> None:
    history = owners(
        ("gpu-1", "alice", "2024-04-01T00:00Z", "2024-04-22T12:00Z"),
        ("gpu-1", "bob", "2024-04-22T12:00Z", None),
        ("gpu-2", "carol", "2024-04-23T06:00Z", None),  # registered during epoch 3
    )
    found = owners_at_epochs(
        grid(
            ("gpu-1", "2024-04-22T00:00Z"),
            ("gpu-1", "2024-04-23T00:00Z"),
            ("gpu-2", "2024-04-22T00:00Z"),
            ("gpu-2", "2024-04-23T00:00Z"),
            ("gpu-2", "2024-04-24T00:00Z"),
            ("gpu-3", "2024-04-24T00:00Z"),
        ),
        history,
        DAY_US,
    )
    # the change at noon belongs to the next epoch; gpu-2 joins carol in its first epoch
    assert found.to_list() == ["alice", "bob", None, "carol", "carol", None]


def _fleet() -> tuple[pl.DataFrame, pl.DataFrame]:
    p = policy()
    beats = concat(
        heartbeats("gpu-a", start="2024-04-20T00:00Z", every="60s", n=60 * 24 * 3),
        heartbeats("gpu-b", start="2024-04-20T00:00Z", every="60s", n=60 * 24 * 2),
        heartbeats("gpu-c", start="2024-04-21T00:00Z", every="60s", n=60 * 24 * 2),
        heartbeats("gpu-d", start="2024-04-20T00:00Z", every="60s", n=60 * 24),
    )
    results = device_epochs(online_intervals(beats, p), p)
    history = owners(
        ("gpu-a", "alice", None, None),
        ("gpu-b", "bob", None, None),
        ("gpu-c", "alice", None, None),
    )  # gpu-d has no owner
    return results, history


def test_rows_totals_and_pools_reconcile_exactly() -> None:
    p = policy()
    results, history = _fleet()
    rows = snapshot_rows(results, history, epochs=range(7), epoch_length_us=p.epoch_length_us)
    assert rows.height == 4 * 7
    suppliers = supplier_totals(rows)
    totals = epoch_totals(rows, range(7), p.pool_per_epoch)
    paid = totals.filter(pl.col("eligible_devices") > 0)
    assert (paid.get_column("paid") == p.pool_per_epoch).all()
    assert totals.get_column("paid").sum() == rows.get_column("reward").sum()
    assert suppliers.get_column("reward").sum() + totals.get_column("unassigned").sum() == (
        totals.get_column("paid").sum()
    )
    assert totals.row(0, named=True)["unassigned"] > 0  # gpu-d shares epoch 0
    assert suppliers.get_column("owner_id").to_list() == ["alice", "bob"]
    assert suppliers.row(0, named=True)["devices"] == 2


def test_epoch_range_keeps_only_those_epochs() -> None:
    p = policy()
    results, history = _fleet()
    rows = snapshot_rows(results, history, epochs=range(2, 4), epoch_length_us=p.epoch_length_us)
    assert sorted(set(rows.get_column("epoch").to_list())) == [2, 3]


def test_same_inputs_in_any_order_give_the_same_bytes_hash_and_root() -> None:
    p = policy()
    results, history = _fleet()
    shuffled = results.sample(fraction=1.0, shuffle=True, seed=3)
    rows_a = snapshot_rows(results, history, epochs=range(7), epoch_length_us=p.epoch_length_us)
    rows_b = snapshot_rows(
        shuffled, history.reverse(), epochs=range(7), epoch_length_us=p.epoch_length_us
    )
    assert canonical_csv(rows_a, 6) == canonical_csv(rows_b, 6)
    assert content_hash(canonical_csv(rows_a, 6)) == content_hash(canonical_csv(rows_b, 6))
    leaves_a = payout_leaves(supplier_totals(rows_a), "test", 1)
    leaves_b = payout_leaves(supplier_totals(rows_b), "test", 1)
    assert merkle_root(leaves_a) == merkle_root(leaves_b)
    header = canonical_csv(rows_a, 6).split(b"\n")[0].decode()
    assert header.startswith("device_id,epoch,epoch_start,owner_id,")
    assert b"2024-04-20T00:00:00Z" in canonical_csv(rows_a, 6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), epoch_sorted=st.booleans())
def test_rows_are_in_device_then_epoch_order_from_any_row_order(
    seed: int, epoch_sorted: bool
) -> None:
    """Rows in epoch order take the stable one-key sort, others the two-key sort: both
    give (device_id bytes, epoch) order, the same frame."""
    p = policy()
    results, history = _fleet()
    mixed = results.sample(fraction=1.0, shuffle=True, seed=seed)
    if epoch_sorted:  # devices in any order within each epoch
        mixed = mixed.sort("epoch", maintain_order=True)
    rows = snapshot_rows(mixed, history, epochs=range(7), epoch_length_us=p.epoch_length_us)
    keys = list(zip(rows.get_column("device_id"), rows.get_column("epoch"), strict=True))
    assert keys == sorted(keys, key=lambda k: (k[0].encode(), k[1]))
    expected = snapshot_rows(results, history, epochs=range(7), epoch_length_us=p.epoch_length_us)
    assert rows.equals(expected)


def test_every_supplier_proof_verifies_and_a_tampered_one_does_not() -> None:
    p = policy()
    results, history = _fleet()
    rows = snapshot_rows(results, history, epochs=range(7), epoch_length_us=p.epoch_length_us)
    leaves = payout_leaves(supplier_totals(rows), "test", 2)
    root = merkle_root(leaves)
    for leaf in leaves:
        assert verify_proof(leaf, merkle_proof(leaves, leaf.holder), root)
    alice = leaves[0]
    proof = merkle_proof(leaves, alice.holder)
    more = type(alice)(alice.holder, alice.season, alice.version, alice.amount + 1)
    assert not verify_proof(more, proof, root)
    older = type(alice)(alice.holder, alice.season, 1, alice.amount)
    assert not verify_proof(older, proof, root)


def test_fingerprint_ignores_row_order_but_not_content() -> None:
    frame = pl.DataFrame(
        {
            "device_id": ["a", "b", None],
            "start": [at("2024-04-20T00:00Z"), at("2024-04-21T00:00Z"), None],
            "ids": [["x", "y"], [], None],
            "flag": [True, False, None],
        },
        schema={
            "device_id": pl.String(),
            "start": TIME,
            "ids": pl.List(pl.String()),
            "flag": pl.Boolean(),
        },
    )
    base = fingerprint({"f": frame, "g": frame.head(1)})
    assert fingerprint({"g": frame.head(1), "f": frame.reverse()}) == base
    changed = frame.with_columns(
        pl.when(pl.col("device_id") == "a").then(pl.lit("ab")).otherwise("device_id")
    )
    assert fingerprint({"f": changed, "g": frame.head(1)}) != base
    # the same characters split differently between rows are a different input
    split = frame.with_columns(pl.Series("device_id", ["ab", "", None]))
    resplit = frame.with_columns(pl.Series("device_id", ["a", "b", None]))
    assert fingerprint({"f": split}) != fingerprint({"f": resplit})
    assert fingerprint({"f": frame}) != fingerprint({"renamed": frame})


@pytest.mark.parametrize(
    ("units", "decimals", "text"),
    [
        (0, 6, "0.000000"),
        (5, 6, "0.000005"),
        (1_234_567, 6, "1.234567"),
        (-1_500_000, 6, "-1.500000"),
        (66_666_666_667, 6, "66666.666667"),
        (42, 0, "42"),
    ],
)
def test_reward_decimal_is_exact(units: int, decimals: int, text: str) -> None:
    frame = pl.DataFrame({"r": [units]}, schema={"r": pl.Int64})
    assert frame.select(reward_decimal("r", decimals)).item() == text


def _random_rows(rng: random.Random, devices: int, tag: str) -> pl.DataFrame:
    records = []
    for d in range(devices):
        for epoch in range(3):
            if rng.random() < 0.1:
                continue  # absent from this snapshot
            eligible = rng.random() < 0.6
            records.append(
                {
                    "device_id": f"gpu-{d}",
                    "epoch": epoch,
                    "owner_id": f"owner-{rng.randrange(4)}" if rng.random() < 0.9 else None,
                    "eligible": eligible,
                    "reason": "ELIGIBLE" if eligible else "BELOW_MIN_UPTIME",
                    "reward": rng.randrange(1, 100) if eligible else 0,
                    "uptime_ratio": 0.5,
                    "tag": tag,
                }
            )
    return pl.DataFrame(
        records,
        schema={
            "device_id": pl.String,
            "epoch": pl.Int64,
            "owner_id": pl.String,
            "eligible": pl.Boolean,
            "reason": pl.String,
            "reward": pl.Int64,
            "uptime_ratio": pl.Float64,
            "tag": pl.String,
        },
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), devices=st.integers(0, 12))
def test_diff_agrees_with_the_two_snapshots_row_by_row(seed: int, devices: int) -> None:
    rng = random.Random(seed)
    before, after = _random_rows(rng, devices, "a"), _random_rows(rng, devices, "b")
    if before.is_empty() or after.is_empty():
        return
    rows = diff_rows(before, after)
    a = {(r["device_id"], r["epoch"]): r for r in before.iter_rows(named=True)}
    b = {(r["device_id"], r["epoch"]): r for r in after.iter_rows(named=True)}
    expected = set()
    for key in a.keys() | b.keys():
        ra, rb = a.get(key), b.get(key)
        ea, eb = bool(ra and ra["eligible"]), bool(rb and rb["eligible"])
        wa, wb = (ra["reward"] if ra else 0), (rb["reward"] if rb else 0)
        oa, ob = (ra["owner_id"] if ra else None), (rb["owner_id"] if rb else None)
        if ea != eb or wa != wb or oa != ob:
            expected.add((key, wb - wa))
    assert {((r["device_id"], r["epoch"]), r["delta"]) for r in rows.iter_rows(named=True)} == (
        expected
    )

    sa, sb = supplier_totals(_complete(before)), supplier_totals(_complete(after))
    suppliers = diff_suppliers(sa, sb)
    paid = dict(sa.select("owner_id", "reward").iter_rows())
    due = dict(sb.select("owner_id", "reward").iter_rows())
    for owner in paid.keys() | due.keys():
        delta = due.get(owner, 0) - paid.get(owner, 0)
        found = suppliers.filter(pl.col("owner_id") == owner)
        assert found.height == (1 if delta else 0)
        if delta:
            assert found.item(0, "delta") == delta
    settled = adjustments(sa, sb)
    assert settled.get_column("adjustment").sum() == sum(due.values()) - sum(paid.values())
    assert set(settled.get_column("direction")) <= {"owed", "overpaid"}
    summary = summarize(rows, suppliers)
    assert summary.moved == sum(d for d in suppliers.get_column("delta") if d > 0)
    assert summary.device_epochs_changed == len(expected)


def _complete(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.with_columns(pl.col("reward").cast(pl.Int64))


def _owner_reference(device: str, start_us: int, history: list[tuple[str, str, int, int | None]]):  # type: ignore[no-untyped-def]
    mine = sorted((f, t, o) for d, o, f, t in history if d == device)
    for valid_from, valid_to, owner in mine:
        if valid_from <= start_us and (valid_to is None or valid_to > start_us):
            return owner
    for valid_from, _, owner in mine:
        if start_us < valid_from < start_us + DAY_US:
            return owner
    return None


@settings(max_examples=60, deadline=None)
@given(
    spans=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 9 * 24)),
        max_size=12,
    )
)
def test_owners_at_epochs_match_a_plain_reference(spans: list[tuple[int, int]]) -> None:
    base = to_us(at("2024-04-20T00:00Z"))
    hour = 3_600_000_000
    history = []
    for device, (index, offset) in enumerate(spans):
        name = f"gpu-{index}"
        if any(d == name and f == base + offset * hour for d, _, f, _ in history):
            continue
        # consecutive versions: each closes when the device's next one starts
        history.append((name, f"owner-{device}", base + offset * hour, None))
    history.sort(key=lambda r: (r[0], r[2]))
    closed = []
    for i, (d, o, f, _) in enumerate(history):
        nxt = history[i + 1] if i + 1 < len(history) and history[i + 1][0] == d else None
        closed.append((d, o, f, nxt[2] if nxt else None))
    frame = pl.DataFrame(
        [
            {"device_id": d, "owner_id": o, "valid_from": from_us(f), "valid_to": t and from_us(t)}
            for d, o, f, t in closed
        ],
        schema=dict(OWNERS),
    )
    cells = [(f"gpu-{i}", base + e * DAY_US) for i in range(5) for e in range(8)]
    found = owners_at_epochs(
        pl.DataFrame(
            {"device_id": [d for d, _ in cells], "epoch_start": [from_us(s) for _, s in cells]},
            schema={"device_id": pl.String(), "epoch_start": TIME},
        ),
        frame,
        DAY_US,
    ).to_list()
    assert found == [_owner_reference(d, s, closed) for d, s in cells]


def test_an_epoch_closes_on_the_feed_watermark_plus_settlement_not_on_the_clock_alone() -> None:
    season = policy(end="2024-05-20T00:00:00Z")
    settle = 2 * 3600 * 1_000_000
    day = timedelta(days=1)
    end_of_epoch_4 = season.start + 5 * day
    clock = season.start + 20 * day  # the wall clock moved on
    stuck = end_of_epoch_4 + timedelta(hours=2)  # the feed stopped 2 h after epoch 4 ended
    assert closed_epochs(season, clock, settle, watermark=stuck) == range(5)
    assert closed_epochs(season, clock, settle, watermark=stuck - timedelta(microseconds=1)) == (
        range(4)
    )
    assert closed_epochs(season, clock, settle, watermark=None) == range(0)
    assert closed_epochs(season, season.start + 3 * day, settle, watermark=clock) == range(2)


def test_the_fingerprint_of_sorted_input_is_that_of_any_order() -> None:
    """Input strictly increasing by its first two columns is hashed as it comes (no sort);
    the digest is the one of any other order, including ties in the first column and nulls
    further on."""
    frame = pl.DataFrame(
        {
            "a_device": ["d1", "d1", "d2", "é", "é"],
            "b_end": [3, 5, 1, 2, 9],
            "c_text": ["x", None, "yy", "", "zz"],
        }
    )
    assert fingerprint({"f": frame}) == fingerprint({"f": frame.reverse()})
    assert fingerprint({"f": frame}) == fingerprint(
        {"f": frame.sample(fraction=1.0, seed=3, shuffle=True)}
    )
    tied = frame.with_columns(pl.lit(1).alias("b_end"))  # not strictly increasing: sorted
    assert fingerprint({"f": tied}) == fingerprint({"f": tied.reverse()})


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["d1", "d2", "é", "gpu-7", "x"]),
            st.integers(0, 5),
            st.none() | st.text(max_size=3),
        ),
        max_size=25,
    ),
    st.integers(1, 9),
)
def test_the_fingerprint_made_shard_by_shard_is_that_of_the_whole(
    rows: list[tuple[str, int, str | None]], shards: int
) -> None:
    """Each shard's parts, combined in any order, give the whole frame's fingerprint; a
    bucket's rows split over two parts are refused."""
    frame = pl.DataFrame(
        rows, schema={"device_id": pl.String, "end": pl.Int64, "note": pl.String}, orient="row"
    )
    whole = fingerprint({"f": frame, "g": frame.head(2)})
    split = frame.with_columns(shard=device_shards(frame.get_column("device_id"), shards))
    pieces = [fingerprint_parts(p.drop("shard")) for p in split.partition_by("shard")]
    schemas = {"f": frame.schema, "g": frame.head(2).schema}
    got = combine_fingerprint(
        {"f": (schemas["f"], pieces[::-1]), "g": (schemas["g"], [fingerprint_parts(frame.head(2))])}
    )
    assert got == whole
    if frame.height >= 2:
        halves = [fingerprint_parts(frame.head(1)), fingerprint_parts(frame.tail(-1))]
        if set(halves[0]["bucket"]) & set(halves[1]["bucket"]):
            with pytest.raises(ValueError, match="more than one part"):
                combine_fingerprint({"f": (schemas["f"], halves)})


@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.none() | st.integers(0, 2))),
    st.booleans(),
)
def test_increasing_by_any_keys_is_the_plain_lexicographic_check(
    rows: list[tuple[int, int, int | None]], strict: bool
) -> None:
    frame = pl.DataFrame(rows, schema={"a": pl.Int64, "b": pl.Int64, "c": pl.Int64}, orient="row")
    for keys in (("a", "b"), ("a", "b", "c")):
        values = [tuple(r[: len(keys)]) for r in rows]
        if len(rows) >= 2 and any(v is None for t in values for v in t):
            expected = False
        else:
            pairs = list(pairwise(values))
            expected = all(x < y if strict else x <= y for x, y in pairs)
        assert increasing(frame, *keys, strict=strict) == expected
