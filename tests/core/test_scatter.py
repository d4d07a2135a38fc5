"""The scatter of segments into (device, epoch) cells against the plain rule: walk every
epoch of every segment and add (or take the max of) the overlap."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.core.scatter import Grid, cell_counts, clipped_max, clipped_sums, epoch_major

GRID = Grid(start=1_000, length=100, epochs=5, count=4)

segments = st.lists(
    st.tuples(
        st.integers(0, GRID.count - 1),
        st.integers(GRID.start - 250, GRID.start + 750),  # before, inside and after the season
        st.integers(0, 600),
    ),
    max_size=30,
)


def plain(rows: list[tuple[int, int, int]], combine: str) -> np.ndarray:
    out = np.zeros(GRID.size, dtype=np.int64)
    for device, s, length in rows:
        for epoch in range(GRID.epochs):
            lo = GRID.start + epoch * GRID.length
            overlap = max(0, min(s + length, lo + GRID.length) - max(s, lo))
            cell = device * GRID.epochs + epoch
            if overlap and combine == "sum":
                out[cell] += overlap
            elif overlap:
                out[cell] = max(out[cell], overlap)
    return out


def arrays(rows: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    device = np.array([r[0] for r in rows], dtype=np.uint32)
    s = np.array([r[1] for r in rows], dtype=np.int64)
    return device, s, s + np.array([r[2] for r in rows], dtype=np.int64)


@settings(max_examples=300, deadline=None)
@given(segments)
def test_sums_and_maxima_equal_the_plain_rule(rows: list[tuple[int, int, int]]) -> None:
    device, s, e = arrays(rows)
    assert clipped_sums(device, s, e, GRID).tolist() == plain(rows, "sum").tolist()
    assert clipped_max(device, s, e, GRID).tolist() == plain(rows, "max").tolist()


def test_a_segment_over_the_whole_season_fills_every_epoch_and_nothing_else() -> None:
    device, s, e = arrays([(2, GRID.start - 5, GRID.length * GRID.epochs + 10)])
    sums = clipped_sums(device, s, e, GRID).reshape(GRID.count, GRID.epochs)
    assert sums[2].tolist() == [GRID.length] * GRID.epochs
    assert sums[[0, 1, 3]].sum() == 0  # the next device's block gets nothing


def test_counts_and_epoch_major_order() -> None:
    counts = cell_counts(np.array([1, 1, 3]), np.array([0, 0, 4]), GRID)
    assert counts[1 * GRID.epochs] == 2 and counts[3 * GRID.epochs + 4] == 1
    turned = epoch_major(np.arange(GRID.size), GRID)
    # epoch-major cell (epoch 4, device 3) holds device-major cell (device 3, epoch 4)
    assert turned[4 * GRID.count + 3] == 3 * GRID.epochs + 4
    assert sorted(turned.tolist()) == list(range(GRID.size))
