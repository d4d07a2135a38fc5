"""The eligibility view: which epochs have begun, owner buckets, and outcomes in words."""

from __future__ import annotations

import hashlib
import json
import zlib
from decimal import ROUND_HALF_UP, Decimal

import polars as pl
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rewards.core import device_epochs, online_intervals
from rewards.core.eligibility_view import (
    GRID_LETTERS,
    NOT_OWNED,
    VIEW_ROWS,
    device_documents,
    grid_letter_expr,
    owner_slices,
    pack_devices,
    pack_view,
    started_epochs,
    stored_rows,
    view_rows,
)
from rewards.core.explanations import (
    explain,
    explanation_expr,
    minutes_words,
    percent_words,
    percent_words_expr,
    shown_parts,
)
from rewards.core.frames import to_us
from rewards.core.snapshot_rows import OWNERS, snapshot_rows
from rewards.core.timeline import grid_state
from tests.builders import at, concat, heartbeats, policy

SEASON = policy()  # seven one-day epochs from 2024-04-20
DAY = 86_400.0


def test_started_epochs_counts_every_epoch_that_has_begun() -> None:
    assert started_epochs(SEASON, to_us(at("2024-04-19T23:59Z"))) == range(0)
    assert started_epochs(SEASON, to_us(at("2024-04-20T00:00Z"))) == range(1)
    assert started_epochs(SEASON, to_us(at("2024-04-21T23:59:59Z"))) == range(2)
    assert started_epochs(SEASON, to_us(at("2024-04-22T00:00Z"))) == range(3)
    assert started_epochs(SEASON, to_us(at("2024-06-01T00:00Z"))) == range(7)


def _rows(as_of: str) -> pl.DataFrame:
    beats = concat(
        heartbeats("gpu-a", start="2024-04-20T00:00Z", n=2 * 1440 + 360),  # until 06:00 on the 22nd
        heartbeats("gpu-b", start="2024-04-20T00:00Z", n=600),
        heartbeats("gpu-c", start="2024-04-21T00:00Z", n=1440),
    )
    results = device_epochs(online_intervals(beats, SEASON), SEASON)
    owners = pl.DataFrame(
        [
            {"device_id": "gpu-a", "owner_id": "alice", "valid_from": None, "valid_to": None},
            {
                "device_id": "gpu-b",
                "owner_id": "bob",
                "valid_from": None,
                "valid_to": at("2024-04-20T12:00Z"),
            },
            {
                "device_id": "gpu-b",
                "owner_id": "alice",
                "valid_from": at("2024-04-20T12:00Z"),
                "valid_to": None,
            },
        ],  # gpu-c has no owner on record
        schema=dict(OWNERS),
    )
    epochs = started_epochs(SEASON, to_us(at(as_of)))
    rows = snapshot_rows(results, owners, epochs=epochs, epoch_length_us=SEASON.epoch_length_us)
    return view_rows(rows, SEASON, to_us(at(as_of)))


def test_view_rows_are_the_started_epochs_of_owned_devices_in_owner_order() -> None:
    rows = _rows("2024-04-22T06:00Z")  # epochs 0 and 1 are over, epoch 2 is running
    assert rows.schema == pl.Schema(VIEW_ROWS)
    assert rows.select("owner_id", "device_id", "epoch").rows() == [
        ("alice", "gpu-a", 0),
        ("alice", "gpu-a", 1),
        ("alice", "gpu-a", 2),
        ("alice", "gpu-b", 1),  # alice's from the first epoch that began after the sale
        ("alice", "gpu-b", 2),
        ("bob", "gpu-b", 0),
    ]
    assert rows.filter(pl.col("in_progress")).get_column("epoch").unique().to_list() == [2]
    gpu_a = rows.filter(device_id="gpu-a")
    assert gpu_a.get_column("reason").to_list() == ["ELIGIBLE", "ELIGIBLE", "BELOW_MIN_UPTIME"]
    assert "so far (the epoch is still running)" in explain(gpu_a.row(2, named=True), SEASON)


@settings(deadline=None)  # polars work; a busy machine is no failure
@given(threads=st.integers(1, 4))
def test_each_owner_gets_one_document_of_its_rows_whatever_the_threads(threads: int) -> None:
    rows = _rows("2024-04-27T00:00Z")
    rows = pl.concat(
        [rows, rows.with_columns(owner_id=pl.col("owner_id") + "-" + pl.col("device_id"))]
    ).sort("owner_id", "device_id", "epoch")
    documents, _ = pack_view(device_documents(rows, SEASON, SEASON.epoch_count), threads)
    assert documents.get_column("owner_id").to_list() == sorted(set(rows["owner_id"]))
    expected = stored_rows(rows, SEASON)
    for owner, count, digest, packed in documents.iter_rows():
        mine = expected.filter(owner_id=owner).drop("owner_id")
        assert count == mine.height
        assert json.loads(zlib.decompress(packed)) == mine.to_dicts()
        assert hashlib.sha256(packed).hexdigest() == digest


@settings(deadline=None, max_examples=30)
@given(
    as_of=st.sampled_from(["2024-04-20T06:00Z", "2024-04-22T06:00Z", "2024-04-27T00:00Z"]),
    owners=st.lists(st.sampled_from(["alice", "bob", "carol", "a", "ab"]), min_size=1, unique=True),
    threads=st.integers(1, 3),
)
def test_devices_packed_from_the_rows_json_buffer_are_the_same_bytes(
    as_of: str, owners: list[str], threads: int
) -> None:
    """The view's fast packing (each device's segment compressed straight from the rows'
    JSON buffer) gives exactly `pack_view(device_documents(...))`: owners of one device or
    many, devices under several owners, the season's start and end, and no rows."""
    base = _rows(as_of)
    rows = pl.concat(
        [base.with_columns(owner_id=pl.lit(o) + pl.col("owner_id")) for o in owners]
    ).sort("owner_id", "device_id", "epoch")
    epochs = len(started_epochs(SEASON, to_us(at(as_of))))
    for some in (rows, rows.clear()):
        fast = pack_devices(some, SEASON, epochs, threads)
        reference = pack_view(device_documents(some, SEASON, epochs), threads)
        assert fast[0].equals(reference[0]) and fast[1].equals(reference[1])


def _row(**fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "online_s": 0.0,
        "bridged_s": 0.0,
        "credited_s": 0.0,
        "uptime_ratio": 0.0,
        "reason": "NO_HEARTBEATS",
        "shortfall_s": 0.0,
        "bridges_used": 0,
        "bridges_denied": 0,
        "longest_uncounted_gap_s": 0.0,
        "crediting_incidents": None,
        "in_progress": False,
    }
    row.update(fields)
    return row


def test_explanations_say_what_counted_and_why_in_words() -> None:
    counted = 72_000.0 + 600.0
    below = _row(
        online_s=72_000.0,
        bridged_s=600.0,
        uptime_ratio=counted / DAY,
        reason="BELOW_MIN_UPTIME",
        shortfall_s=0.9 * DAY - counted,
        bridges_used=2,
        bridges_denied=1,
        longest_uncounted_gap_s=3 * 3600 + 12 * 60 + 59,
    )
    assert explain(below, SEASON) == (
        "Not eligible: 20 h 10 min counted of 24 h (84%; 90%, 21 h 36 min, needed): online 20 h, "
        "10 min of short gaps bridged (2 gaps); 1 h 26 min short. "
        "Longest uncounted gap: 3 h 12 min. "
        "1 short gap was not bridged: at most 3 per epoch."
    )
    carried = {**below, "bridges_used": 0, "bridges_denied": 0}  # the gap began the day before
    assert "10 min of short gaps bridged (begun the epoch before)" in explain(carried, SEASON)
    credited = _row(
        online_s=60_000.0,
        credited_s=24_000.0,
        uptime_ratio=84_000 / DAY,
        reason="ELIGIBLE",
        crediting_incidents="apr-25;z-1",
    )
    assert explain(credited, SEASON) == (
        "Eligible: 23 h 20 min counted of 24 h (97.2%; 90%, 21 h 36 min, needed): "
        "online 16 h 40 min, "
        "6 h 40 min credited by incident apr-25, z-1."
    )
    assert explain(_row(in_progress=True), SEASON) == (
        "Not eligible: no heartbeats counted in this epoch so far (the epoch is still running)."
    )
    assert "suspended" in explain(_row(reason="SUSPENDED", online_s=DAY), SEASON)


seconds = st.floats(0, 86_400, allow_nan=False).map(lambda s: round(s, 6))
rows = st.fixed_dictionaries(
    {
        "online_s": seconds,
        "bridged_s": st.one_of(st.just(0.0), seconds),
        "credited_s": st.one_of(st.just(0.0), seconds),
        "uptime_ratio": st.one_of(st.just(0.0625), st.floats(0, 1, allow_nan=False)),
        "reason": st.sampled_from(["SUSPENDED", "ELIGIBLE", "NO_HEARTBEATS", "BELOW_MIN_UPTIME"]),
        "shortfall_s": seconds,
        "bridges_used": st.integers(0, 3),
        "bridges_denied": st.integers(0, 5),
        "longest_uncounted_gap_s": st.one_of(st.just(0.0), seconds),
        "crediting_incidents": st.one_of(st.none(), st.just("apr-25"), st.just("a;b-2")),
        "in_progress": st.booleans(),
    }
)


def test_the_numbers_in_words_add_up() -> None:
    """21 h 31 min 10 s counted of the 21 h 36 min needed is 5 min short (4 min 50 s,
    which rounded down said 4), and its parts of 20 h 10 min 40 s and 1 h 20 min 30 s show
    as 20 h 11 min and 1 h 20 min (rounded down both, they said 21 h 30 min)."""
    row = _row(
        online_s=72_640.0,
        bridged_s=4_830.0,
        uptime_ratio=77_470 / DAY,
        reason="BELOW_MIN_UPTIME",
        shortfall_s=0.9 * DAY - 77_470,
        bridges_used=2,
    )
    assert explain(row, SEASON) == (
        "Not eligible: 21 h 31 min counted of 24 h (89.7%; 90%, 21 h 36 min, needed): "
        "online 20 h 11 min, 1 h 20 min of short gaps bridged (2 gaps); 5 min short."
    )


def _minutes(words: str) -> int:
    hours = int(words.split(" h", maxsplit=1)[0]) if " h" in words else 0
    minutes = 0
    if " min" in words:
        minutes = int(words.split(" min", maxsplit=1)[0].rsplit(maxsplit=1)[-1])
    return 0 if words == "under a minute" else hours * 60 + minutes


@given(*(st.floats(0, 86_400, allow_nan=False) for _ in range(3)))
def test_the_parts_shown_sum_to_the_counted_time_shown(a: float, b: float, c: float) -> None:
    counted, parts, unit = shown_parts(a, b, c)
    assert sum(parts) == counted == int((a + b + c) // unit)
    assert all(p >= int(s // unit) for p, s in zip(parts, (a, b, c), strict=True))
    assert all(p <= int(s // unit) + 1 for p, s in zip(parts, (a, b, c), strict=True))
    if unit == 60:
        assert _minutes(minutes_words(counted)) == counted


@settings(deadline=None)  # polars work; a busy machine is no failure
@given(st.lists(rows, min_size=1, max_size=30))
def test_the_stored_explanations_say_exactly_what_explain_says(
    batch: list[dict[str, object]],
) -> None:
    frame = pl.DataFrame(batch, schema={k: VIEW_ROWS[k] for k in batch[0]})
    words = frame.select(explanation_expr(SEASON)).to_series().to_list()
    assert words == [explain(r, SEASON) for r in batch]


def test_stored_rows_are_what_the_api_shows() -> None:
    rows = _rows("2024-04-22T06:00Z")
    stored = stored_rows(rows, SEASON)
    assert stored.columns[0] == "owner_id" and stored.height == rows.height
    first = stored.row(0, named=True)
    assert first["epoch_start"] == "2024-04-20T00:00:00Z"
    assert first["crediting_incidents"] == []
    assert first["explanation"] == explain(rows.row(0, named=True), SEASON)


def _percent_oracle(ratio: float) -> str:
    """The rule, in decimal: the ratio in tenths of a percent, rounded half up."""
    tenths = (Decimal(ratio) * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return f"{tenths / 10:f}".removesuffix(".0") + "%"


def test_a_percentage_is_rounded_half_up_to_a_tenth() -> None:
    cases = {
        0.0: "0%",
        0.0005: "0.1%",  # the case the two wordings once disagreed on ("0.1%" and "0%")
        0.00049: "0%",
        0.00005: "0%",
        0.12345: "12.3%",
        0.8435: "84.4%",
        72_600 / DAY: "84%",
        84_000 / DAY: "97.2%",
        0.9: "90%",
        1.0: "100%",
    }
    for ratio, words in cases.items():
        assert _percent_oracle(ratio) == words
        assert percent_words(ratio) == words


ratios = st.floats(0, 1, allow_nan=False) | st.integers(0, 100_000).map(lambda n: n / 100_000)


@given(ratios)
def test_a_percentage_in_words_follows_the_rule(ratio: float) -> None:
    fraction = (Decimal(ratio) * 1000) % 1
    assume(abs(fraction - Decimal("0.5")) > Decimal("1e-9"))  # float arithmetic's knife edge
    assert percent_words(ratio) == _percent_oracle(ratio)


@settings(deadline=None)  # polars work; a busy machine is no failure
@given(st.lists(ratios | st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_a_percentage_reads_the_same_for_a_number_and_for_a_column(batch: list[float]) -> None:
    column = pl.DataFrame({"r": batch}, schema={"r": pl.Float64})
    words = column.select(percent_words_expr(pl.col("r"))).to_series().to_list()
    assert words == [percent_words(r) for r in batch]


def test_device_documents_split_each_owners_document_and_letter_its_epochs() -> None:
    """The pages read a device's document and letters instead of the owner's whole
    document: together they hold exactly the owner's rows, and each letter is the grid
    state of that epoch's row (NOT_OWNED where the device was not the owner's)."""
    rows = _rows("2024-04-22T06:00Z")
    epochs = len(started_epochs(SEASON, to_us(at("2024-04-22T06:00Z"))))
    devices = device_documents(rows, SEASON, epochs)
    assert devices.select("owner_id", "device_id").rows() == [
        ("alice", "gpu-a"),
        ("alice", "gpu-b"),
        ("bob", "gpu-b"),
    ]
    for owner, device, _, count, document in devices.iter_rows():
        mine = stored_rows(rows, SEASON).filter(owner_id=owner, device_id=device)
        assert json.loads(document) == mine.drop("owner_id").to_dicts() and count == mine.height
    for owner, device, states, _, _ in devices.iter_rows():
        by_epoch = {r["epoch"]: r for r in rows.filter(owner_id=owner, device_id=device).to_dicts()}
        assert len(states) == epochs
        assert states == "".join(
            GRID_LETTERS[grid_state(by_epoch[e], SEASON)] if e in by_epoch else NOT_OWNED
            for e in range(epochs)
        )
    assert devices.filter(owner_id="bob")["states"].item() == "I" + NOT_OWNED * 2  # 10 h, sold
    _, packed = pack_view(devices)
    assert packed.drop("sha256", "document").equals(devices.select(packed.columns[:3]))
    assert [zlib.decompress(d).decode() for d in packed["document"]] == devices[
        "document"
    ].to_list()
    assert device_documents(rows.clear(), SEASON, epochs).is_empty()


@settings(deadline=None)
@given(st.lists(rows, min_size=1, max_size=40), st.floats(0, 86_400).map(lambda s: round(s, 6)))
def test_a_letter_is_the_grid_state_of_its_row(
    batch: list[dict[str, object]], online: float
) -> None:
    frame = pl.DataFrame(
        [{**r, "online_s": online, "eligible": r["reason"] == "ELIGIBLE"} for r in batch],
        schema={**{k: VIEW_ROWS[k] for k in batch[0]}, "eligible": pl.Boolean()},
    )
    letters = frame.select(grid_letter_expr(SEASON)).to_series().to_list()
    assert letters == [GRID_LETTERS[grid_state(r, SEASON)] for r in frame.to_dicts()]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@settings(deadline=None)
@given(
    owners=st.lists(st.lists(st.lists(json_values, min_size=1, max_size=4), min_size=1,
                             max_size=4), max_size=8),
    threads=st.integers(1, 5),
)  # fmt: skip
def test_packing_on_threads_gives_the_bytes_and_digests_of_packing_on_one(
    owners: list[list[list[object]]], threads: int
) -> None:
    """Whatever the owners, devices and rows, and however many threads share the work:
    a device's stored document reads back as its JSON array, an owner's as its devices'
    rows joined in order, every digest is the SHA-256 of the stored bytes, and the bytes
    are those of packing on one thread."""
    devices = pl.DataFrame(
        [(f"o{o}", f"d{d}", "E", len(rows), json.dumps(rows))
         for o, mine in enumerate(owners) for d, rows in enumerate(mine)],
        schema={"owner_id": pl.String, "device_id": pl.String, "states": pl.String,
                "rows": pl.Int64, "document": pl.String},
        orient="row",
    )  # fmt: skip
    by_owner, by_device = pack_view(devices)
    assert [json.loads(zlib.decompress(d)) for d in by_device["document"]] == [
        rows for mine in owners for rows in mine
    ]
    assert [json.loads(zlib.decompress(d)) for d in by_owner["document"]] == [
        [row for rows in mine for row in rows] for mine in owners
    ]
    assert by_owner["rows"].to_list() == [sum(len(rows) for rows in mine) for mine in owners]
    for packed in (by_owner, by_device):
        digests = [hashlib.sha256(d).hexdigest() for d in packed["document"]]
        assert packed["sha256"].to_list() == digests
    threaded = pack_view(devices, threads)
    assert threaded[0].equals(by_owner) and threaded[1].equals(by_device)


@settings(deadline=None)
@given(owners=st.lists(st.integers(1, 9), min_size=0, max_size=12), size=st.integers(0, 30))
def test_owner_slices_hold_every_owner_whole_and_every_row_once(
    owners: list[int], size: int
) -> None:
    rows = pl.DataFrame(
        {"owner_id": [f"o{o:02d}" for o, n in enumerate(owners) for _ in range(n)]},
        schema={"owner_id": pl.String},
    ).with_row_index()
    slices = list(owner_slices(rows, size))
    assert pl.concat([rows.clear(), *slices]).equals(rows)
    seen = [set(s["owner_id"]) for s in slices]
    assert all(s.height for s in slices)
    assert sum(len(s) for s in seen) == len(set().union(*seen))  # no owner in two slices
    for piece in slices[:-1]:  # a slice stops at the first owner end from `size` rows on
        ends = piece.height - 1
        assert (
            piece.height >= max(1, size)
            and piece["owner_id"][ends] != rows["owner_id"][piece["index"][ends] + 1]
        )


def test_a_view_packed_by_owner_slices_is_the_view_packed_whole() -> None:
    rows = _rows("2024-04-27T00:00Z")
    rows = pl.concat(
        [rows, rows.with_columns(owner_id=pl.col("owner_id") + "-" + pl.col("device_id"))]
    ).sort("owner_id", "device_id", "epoch")
    whole = pack_view(device_documents(rows, SEASON, SEASON.epoch_count))
    for size in (1, 3, 7, rows.height):
        parts = [
            pack_view(device_documents(some, SEASON, SEASON.epoch_count))
            for some in owner_slices(rows, size)
        ]
        assert len(parts) > 1 or size == rows.height
        assert pl.concat([p[0] for p in parts]).equals(whole[0])
        assert pl.concat([p[1] for p in parts]).equals(whole[1])
