"""Compressed JSON arrays joined from pieces compressed once read back as the joined text."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from rewards.core.deflate import adler32_combine, json_array, segment


@given(st.binary(max_size=300), st.binary(max_size=70_000))
def test_adler32_combines_as_zlib_computes_it_over_both_texts(first: bytes, second: bytes) -> None:
    combined = adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second))
    assert combined == zlib.adler32(first + second)


@given(st.lists(st.binary(max_size=5_000) | st.text(max_size=400).map(str.encode), max_size=12))
def test_a_json_array_of_segments_reads_back_as_its_items_joined(items: list[bytes]) -> None:
    """zlib's own reader (which checks the Adler-32) reads the joined stream back."""
    stream = json_array([segment(item) for item in items])
    assert zlib.decompress(stream) == b"[" + b",".join(items) + b"]"


def test_a_long_text_keeps_no_reference_past_its_segment() -> None:
    """A segment placed after another still reads back: its matches (up to 32 KiB back)
    only point into its own text."""
    text = b"0123456789abcdef" * 8_000  # 128 KiB, full of repeats
    stream = json_array([segment(text), segment(text[::-1]), segment(b"")])
    assert zlib.decompress(stream) == b"[" + text + b"," + text[::-1] + b",]"
