"""Files the engine writes: whole or not at all, and on disk before they are renamed into
place (a rename without fsync can survive a power loss while the data does not)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import polars as pl


def fsync_path(path: Path) -> None:
    """Flush `path` (a file or a folder's entries) to disk. Folders cannot be opened on
    Windows; there a rename is already durable, so nothing is done for them."""
    if path.is_dir() and os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write` on a file beside `path`, fsync it and rename it into place (then fsync
    the folder), so a failure or crash never leaves a half-written `path` behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        fsync_path(partial)
        partial.replace(path)
        fsync_path(path.parent)
    finally:
        partial.unlink(missing_ok=True)


def secret_file(path: Path, make: Callable[[], str]) -> str:
    """The text of `path`, first written with `make()` when missing: created exclusively
    with mode 0600 (when two processes race, the first one's stays), its folder made."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(make() + "\n")
    return path.read_text().strip()


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write `frame` to Parquet at `path`, atomically."""
    write_atomically(path, frame.write_parquet)


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of the file at `path`, read a MiB at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_bytes(value: object) -> bytes:
    """`value` as the JSON files the engine hands out: indented, keys sorted, UTF-8."""
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
