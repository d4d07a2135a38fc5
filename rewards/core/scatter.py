"""Per device-epoch totals and maxima of time segments, scattered into dense arrays.

A segment [s, e) of a device lies in one epoch or spans several; clipped to the season's
epochs it has a head piece, a tail piece and whole epochs between. Each goes straight to
its (device, epoch) cell: the head and tail by `np.add.at` / `np.maximum.at`, the whole
epochs by a difference array (+1 after the head, -1 at the tail, one running sum), so no
segment is split into rows and nothing is sorted.

Cells are device-major (`device x epochs + epoch`): input sorted by device, as intervals
and gaps are, then writes to neighbouring cells, which is several times faster than
writing all over an epoch-major array. `epoch_major` turns the result around for the
output's order. Times are integer µs; the arrays are int64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """The season's epochs and the devices: `count` devices by `epochs` epochs of
    `length` µs from `start` µs."""

    start: int
    length: int
    epochs: int
    count: int

    @property
    def size(self) -> int:
        return self.count * self.epochs


@dataclass(frozen=True)
class _Pieces:
    """Segments clipped to the season, as the cells their pieces fall in."""

    head_cell: np.ndarray  # the first epoch's cell of each segment, and its piece's length
    head: np.ndarray
    tail_cell: np.ndarray  # the last epoch's cell of each segment spanning two or more
    tail: np.ndarray
    whole: np.ndarray  # per cell: how many segments cover the whole epoch (device-major)


def _pieces(device: np.ndarray, s: np.ndarray, e: np.ndarray, grid: Grid) -> _Pieces:
    end = grid.start + grid.epochs * grid.length
    s, e = np.maximum(s, grid.start), np.minimum(e, end)
    inside = e > s
    device, s, e = device[inside].astype(np.int64), s[inside], e[inside]
    first = (s - grid.start) // grid.length
    last = (e - 1 - grid.start) // grid.length
    base = device * grid.epochs
    head = np.minimum(e, grid.start + (first + 1) * grid.length) - s
    spans = last > first
    tail = e[spans] - (grid.start + last[spans] * grid.length)
    between = last - first >= 2
    marks = np.zeros(grid.size + 1, dtype=np.int64)
    np.add.at(marks, base[between] + first[between] + 1, 1)
    np.add.at(marks, base[between] + last[between], -1)
    # each +1 has its -1 in the same device's block, so one running sum over the flat
    # array counts, per cell, the segments covering its whole epoch
    return _Pieces(base + first, head, base[spans] + last[spans], tail, np.cumsum(marks[:-1]))


def clipped_sums(device: np.ndarray, s: np.ndarray, e: np.ndarray, grid: Grid) -> np.ndarray:
    """Per (device, epoch) cell, device-major: the total length of the segments [s, e) of
    each device (codes below grid.count) inside that epoch."""
    pieces = _pieces(device, s, e, grid)
    out = pieces.whole * grid.length
    np.add.at(out, pieces.head_cell, pieces.head)
    np.add.at(out, pieces.tail_cell, pieces.tail)
    return out


def clipped_max(device: np.ndarray, s: np.ndarray, e: np.ndarray, grid: Grid) -> np.ndarray:
    """Per (device, epoch) cell, device-major: the longest piece of the segments inside
    that epoch (0 where none)."""
    pieces = _pieces(device, s, e, grid)
    out = np.where(pieces.whole > 0, grid.length, 0).astype(np.int64)
    np.maximum.at(out, pieces.head_cell, pieces.head)
    np.maximum.at(out, pieces.tail_cell, pieces.tail)
    return out


def cell_counts(device: np.ndarray, epoch: np.ndarray, grid: Grid) -> np.ndarray:
    """Per (device, epoch) cell, device-major: how many (device, epoch) pairs name it."""
    cells = device.astype(np.int64) * grid.epochs + epoch.astype(np.int64)
    return np.bincount(cells, minlength=grid.size).astype(np.int64)


def epoch_major(cells: np.ndarray, grid: Grid) -> np.ndarray:
    """Device-major cells in epoch-major order (`epoch x count + device`)."""
    return np.ascontiguousarray(cells.reshape(grid.count, grid.epochs).T).reshape(-1)
