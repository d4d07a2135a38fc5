"""Agent versions compared as dotted numbers (DESIGN 4.5).

`1.9.10` < `1.10` = `1.10.0`; a leading `v` is ignored; any other form is refused. For
vectorized comparison a version becomes a sort key: each component zero-padded to a fixed
width, trailing zero components dropped, so plain string order is version order.
"""

from __future__ import annotations

import re

import polars as pl

_VERSION = re.compile(r"^v?(\d{1,18})(\.\d{1,18})*$")
_PATTERN = r"^v?\d{1,18}(\.\d{1,18})*$"
WIDTH = 18  # digits per component: any component that fits a signed 64-bit integer


class VersionError(ValueError):
    """A version that is not dotted numbers."""


def version_key(version: str) -> str:
    """The sort key of `version`; raises VersionError for anything but dotted numbers."""
    if not _VERSION.match(version):
        raise VersionError(
            f"version {version!r} is not dotted numbers like 1.10.0 (a leading 'v' is allowed)"
        )
    parts = [int(p) for p in version.removeprefix("v").split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return ".".join(f"{p:0{WIDTH}d}" for p in parts)


def version_key_expr(column: str) -> pl.Expr:
    """Vectorized `version_key` of a string column; null where the value is not a version."""
    col = pl.col(column)
    padded = (
        col.str.strip_prefix("v")
        .str.split(".")
        .list.eval(pl.element().str.zfill(WIDTH))
        .list.join(".")
    )
    # Trailing ".000…0" components are dropped so 1.10 and 1.10.0 compare equal.
    zero = r"(\." + "0" * WIDTH + r")+$"
    return pl.when(col.str.contains(_PATTERN)).then(padded.str.replace(zero, "")).otherwise(None)
