"""The identifier rule (DESIGN 10): device_id, owner_id, token subjects and actors.

ASCII letters, digits and `._:-`, 1 to 128 characters. Anything else (padding, zero-width
characters, bidirectional overrides, Cyrillic look-alikes, any other non-ASCII) is refused
so that two identifiers that look the same are the same. Case variants stay distinct.
"""

from __future__ import annotations

import re

import polars as pl

IDENTIFIER_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
_IDENTIFIER = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def is_identifier(value: object) -> bool:
    """True when `value` is a string matching IDENTIFIER_PATTERN (the whole string)."""
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


def identifier_problem(value: object) -> str | None:
    """Why `value` is not an identifier, in words a person can act on; None when it is."""
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if not value:
        return "is empty"
    if len(value) > 128:
        return f"is {len(value)} characters long (at most 128)"
    if not value.isascii():
        return "contains non-ASCII characters (look-alikes are refused)"
    if _IDENTIFIER.fullmatch(value) is None:
        return "may contain only letters, digits and . _ : - (no spaces or control characters)"
    return None


def not_identifiers(values: pl.Series) -> pl.Series:
    """Vectorized `not is_identifier`: True where a value of a string Series is null or
    does not match IDENTIFIER_PATTERN."""
    return ~values.str.contains(IDENTIFIER_PATTERN).fill_null(False)
