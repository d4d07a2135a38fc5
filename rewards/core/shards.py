"""Devices to shards (DESIGN 8): Apache Iceberg's bucket partition transform, exactly as its
table spec defines it, into a fixed number of fine buckets; a shard is a contiguous range
of them, so every fine bucket lies in one shard whatever the shard count (the inputs'
fingerprint is made bucket by bucket and so is the same however a run is sharded).

    bucket_N(device_id) = (murmur3_x86_32(utf8(device_id), seed 0) & 0x7FFFFFFF) mod N
    shard(device_id, S) = bucket_FINE_BUCKETS(device_id) * S div FINE_BUCKETS

The hash is the `mmh3` package's (the reference MurmurHash3 in C); tests/core checks it
against the spec's published values (its appendix B) and the transform's definition.
"""

from __future__ import annotations

import mmh3
import polars as pl

_MAX_INT = 0x7FFFFFFF

FINE_BUCKETS = 4096  # the most shards a computation may have


def murmur3_32(data: bytes) -> int:
    """The 32-bit MurmurHash3 (x86 variant, seed 0) of `data`, signed as Iceberg's spec
    states its test values."""
    return int(mmh3.hash(data, 0, signed=True))


def bucket(device_id: str, buckets: int) -> int:
    """The Iceberg bucket (0 .. buckets-1) of a string value."""
    if buckets < 1:
        raise ValueError(f"the number of buckets must be at least 1, got {buckets}")
    return (murmur3_32(device_id.encode("utf-8")) & _MAX_INT) % buckets


def device_buckets(device_ids: pl.Series) -> pl.Series:
    """The fine bucket (UInt32, 0 .. FINE_BUCKETS-1) of each of `device_ids`, hashed once
    per distinct id."""
    distinct = device_ids.unique()
    codes = pl.Series([bucket(d, FINE_BUCKETS) for d in distinct], dtype=pl.UInt32)
    table = pl.DataFrame({"device_id": distinct, "bucket": codes})
    found = device_ids.to_frame("device_id").join(
        table, on="device_id", how="left", maintain_order="left"
    )
    return found.get_column("bucket")


def shard_of_bucket(buckets: pl.Series, shards: int) -> pl.Series:
    """The shard (UInt32) of each fine bucket when there are `shards` (1 .. FINE_BUCKETS):
    contiguous ranges of buckets, as even as the division allows."""
    if not 1 <= shards <= FINE_BUCKETS:
        raise ValueError(f"shards must be from 1 to {FINE_BUCKETS}, got {shards}")
    return (buckets.cast(pl.UInt64) * shards // FINE_BUCKETS).cast(pl.UInt32)


def device_shards(device_ids: pl.Series, shards: int) -> pl.Series:
    """The shard (UInt32) of each of `device_ids` (1 .. FINE_BUCKETS shards)."""
    return shard_of_bucket(device_buckets(device_ids), shards).alias("shard")
