"""Devices to shards (DESIGN 8): Apache Iceberg's bucket partition transform, exactly as its
table spec defines it, so a shard is the same bucket any Iceberg-aware tool would compute.

    bucket_N(device_id) = (murmur3_x86_32(utf8(device_id), seed 0) & 0x7FFFFFFF) mod N

The hash is the `mmh3` package's (the reference MurmurHash3 in C); tests/core checks it
against the spec's published values (its appendix B) and the transform's definition.
"""

from __future__ import annotations

import mmh3
import polars as pl

_MAX_INT = 0x7FFFFFFF


def murmur3_32(data: bytes) -> int:
    """The 32-bit MurmurHash3 (x86 variant, seed 0) of `data`, signed as Iceberg's spec
    states its test values."""
    return int(mmh3.hash(data, 0, signed=True))


def bucket(device_id: str, buckets: int) -> int:
    """The Iceberg bucket (0 .. buckets-1) of a string value."""
    if buckets < 1:
        raise ValueError(f"the number of buckets must be at least 1, got {buckets}")
    return (murmur3_32(device_id.encode("utf-8")) & _MAX_INT) % buckets


def device_shards(device_ids: pl.Series, shards: int) -> pl.Series:
    """The shard (UInt32) of each of `device_ids`, hashed once per distinct id."""
    distinct = device_ids.unique()
    codes = pl.Series([bucket(d, shards) for d in distinct], dtype=pl.UInt32)
    table = pl.DataFrame({"device_id": distinct, "shard": codes})
    found = device_ids.to_frame("device_id").join(
        table, on="device_id", how="left", maintain_order="left"
    )
    return found.get_column("shard")
