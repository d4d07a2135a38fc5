"""The simulator's deliveries as records: numbers while made, the API's strings when served.

Pure: no I/O. Malformed records are fixed texts, one per way a record can be wrong.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from rewards.sim.timeline import VERSIONS, mix

_GOOD = {
    "device_id": "gpu-bad",
    "observed_at": "2024-04-21T00:00:00Z",
    "boot_id": "b",
    "agent_version": "0.9.9",
}
BAD_RECORDS = (
    json.dumps({k: v for k, v in _GOOD.items() if k != "boot_id"}),
    json.dumps({**_GOOD, "device_id": "gpu\u0000x"}),
    json.dumps({**_GOOD, "observed_at": "2024-04-21T00:00:00"}),
    json.dumps({**_GOOD, "observed_at": "2024-02-30T00:00:00Z"}),
    json.dumps({**_GOOD, "observed_at": "2099-01-01T00:00:00Z"}),
    json.dumps(_GOOD).replace('"b"', '"\\ud800"'),
    json.dumps(_GOOD).replace('"gpu-bad"', "12"),
    json.dumps(_GOOD).replace('"0.9.9"', "NaN"),
    json.dumps(_GOOD).replace('"b"', "123456789012345678901234567890"),
    '"not an object"',
    json.dumps({**_GOOD, "device_id": ""}),
)

# A window or epoch in numbers; rendered to the API's strings only when served.
NUMERIC = pl.Schema(
    {
        "device": pl.Int32,
        "slot": pl.Int32,
        "observed_us": pl.Int64,
        "received_us": pl.Int64,
        "kind": pl.Int8,
        "prefix": pl.Int8,  # 0: none, 1: "!", 2: "~"
        "chunk": pl.Int32,
        "boot": pl.Int16,
        "version": pl.Int8,
        "bad": pl.Int8,  # index in BAD_RECORDS, -1 for good records
    }
)
LOG = pl.Schema(
    {
        "device_id": pl.String,
        "observed_us": pl.Int64,
        "boot_id": pl.String,
        "agent_version": pl.String,
        "received_us": pl.Int64,
        "raw": pl.String,
    }
)


def render_deliveries(rows: pl.DataFrame, *, boot_salt: int) -> pl.DataFrame:
    """NUMERIC rows as the delivery log's columns (LOG): the API's strings."""
    device = rows.get_column("device").to_numpy().astype(np.int64)
    tag_keys = (device << 40) ^ (rows.get_column("chunk").to_numpy().astype(np.int64) << 8)
    tag_keys ^= rows.get_column("boot").to_numpy().astype(np.int64)
    tag = mix(tag_keys, boot_salt) % np.uint64(100_000_000)
    good = pl.col("bad") < 0
    boot_id = pl.concat_str(
        [
            pl.col("prefix").replace_strict({0: "", 1: "!", 2: "~"}, return_dtype=pl.String),
            pl.col("device").cast(pl.String).str.zfill(6),
            pl.lit("-"),
            pl.col("chunk").cast(pl.String).str.zfill(3),
            pl.lit("."),
            pl.col("boot").cast(pl.String).str.zfill(2),
            pl.lit("-"),
            pl.Series(tag.astype(np.int64)).cast(pl.String).str.zfill(8),
        ]
    )
    versions = dict(enumerate(VERSIONS))
    return rows.select(
        device_id=pl.when(good)
        .then(pl.lit("gpu-") + pl.col("device").cast(pl.String).str.zfill(6))
        .otherwise(pl.lit("gpu-bad")),
        observed_us=pl.col("observed_us"),
        boot_id=pl.when(good).then(boot_id).otherwise(pl.lit("")),
        agent_version=pl.when(good)
        .then(pl.col("version").replace_strict(versions, return_dtype=pl.String))
        .otherwise(pl.lit("")),
        received_us=pl.col("received_us"),
        raw=pl.when(good)
        .then(pl.lit(None, pl.String))
        .otherwise(
            pl.col("bad").replace_strict(
                dict(enumerate(BAD_RECORDS)), default=None, return_dtype=pl.String
            )
        ),
    )
