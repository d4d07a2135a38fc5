"""Files the engine writes: whole or not at all."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a file beside `path` and rename it into place, so a failure never
    leaves a half-written `path` (or the partial file) behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write `frame` to Parquet at `path`, atomically."""
    write_atomically(path, frame.write_parquet)
