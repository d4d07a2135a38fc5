"""Devices to shards by Iceberg's bucket transform, checked against its spec."""

from __future__ import annotations

import struct
import uuid
from datetime import date

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewards.core.shards import FINE_BUCKETS, bucket, device_shards, murmur3_32


@pytest.mark.parametrize(
    ("value", "expected"),
    [  # Iceberg table spec, appendix B, "32-bit Hash Requirements": hash(value) = expected
        (struct.pack("<q", 34), 2017239379),  # int and long 34 (as 8 little-endian bytes)
        (struct.pack("<q", (date(2017, 11, 16) - date(1970, 1, 1)).days), -653330422),
        (struct.pack("<q", 81_068_000_000), -662762989),  # time 22:31:08, µs
        (struct.pack("<q", 1_510_871_468_000_000), -2047944441),  # 2017-11-16T22:31:08
        (bytes.fromhex("058c"), -500754589),  # decimal 14.20, unscaled 1420, big-endian
        (b"iceberg", 1210000089),  # string, its UTF-8 bytes
        (uuid.UUID("f79c3e09-677c-4bbd-a479-3f349cb785e7").bytes, 1488055340),
        (bytes([0, 1, 2, 3]), -188683207),  # fixed and binary
    ],
)
def test_the_hash_gives_the_spec_values(value: bytes, expected: int) -> None:
    assert murmur3_32(value) == expected


def test_the_bucket_is_the_non_negative_hash_modulo_n() -> None:
    # hash("iceberg") = 1210000089 is positive: its buckets are plain remainders
    assert [bucket("iceberg", n) for n in (1, 2, 7, 16)] == [1210000089 % n for n in (1, 2, 7, 16)]
    # a negative hash keeps its low 31 bits: the spec's `& Integer.MAX_VALUE`
    negative = next(f"gpu-{i}" for i in range(100) if murmur3_32(f"gpu-{i}".encode()) < 0)
    low = murmur3_32(negative.encode()) & 0x7FFFFFFF
    assert (
        bucket(negative, 7) == low % 7 and bucket(negative, 7) != murmur3_32(negative.encode()) % 7
    )


@given(st.lists(st.text(min_size=1, max_size=12), max_size=30), st.integers(1, FINE_BUCKETS))
def test_a_device_shard_is_the_range_of_its_fine_bucket(ids: list[str], n: int) -> None:
    shards = device_shards(pl.Series(ids + ids[::-1], dtype=pl.String), n).to_list()
    assert shards == [bucket(d, FINE_BUCKETS) * n // FINE_BUCKETS for d in ids + ids[::-1]]
    assert all(0 <= s < n for s in shards)


@given(st.integers(1, FINE_BUCKETS), st.integers(1, FINE_BUCKETS))
def test_a_fine_bucket_lies_in_one_shard_and_shards_are_even(n: int, fine: int) -> None:
    """Whatever the shard count, a fine bucket's devices share a shard (what the
    fingerprint by bucket relies on), and no shard has more than one bucket above another."""
    ranges = [b * n // FINE_BUCKETS for b in range(FINE_BUCKETS)]
    assert ranges == sorted(ranges) and set(ranges) == set(range(n))
    sizes = [ranges.count(s) for s in (0, ranges[fine - 1], n - 1)]
    assert max(sizes) - min(sizes) <= 1


def test_a_fleet_spreads_evenly() -> None:
    ids = pl.Series([f"gpu-{i:06d}" for i in range(70_000)])
    sizes = device_shards(ids, 7).value_counts().get_column("count")
    assert sizes.min() > 9_500 and sizes.max() < 10_500  # 10,000 each, within 5%


def test_no_buckets_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        bucket("gpu-1", 0)
    for shards in (0, FINE_BUCKETS + 1):
        with pytest.raises(ValueError, match=f"from 1 to {FINE_BUCKETS}"):
            device_shards(pl.Series(["gpu-1"]), shards)
