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


CHUNK = 1 << 16  # segments a step: the step's arrays stay small enough to be reused


def _scatter(
    device: np.ndarray, s: np.ndarray, e: np.ndarray, grid: Grid, combine: np.ufunc
) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's head and tail pieces combined (`np.add` or `np.maximum`) into their
    cells, and per cell the number of segments covering its whole epoch.

    Done `CHUNK` segments at a time: whole-column temporaries of tens of millions of
    values made each arithmetic step fault in fresh pages (0.6-2 s a step at fleet scale
    on this machine, against 50 ms in cache-sized steps)."""
    end = grid.start + grid.epochs * grid.length
    out = np.zeros(grid.size, dtype=np.int64)
    marks = np.zeros(grid.size + 1, dtype=np.int64)
    for lo in range(0, s.shape[0], CHUNK):
        a = np.maximum(s[lo : lo + CHUNK], grid.start)
        b = np.minimum(e[lo : lo + CHUNK], end)
        inside = b > a
        base = device[lo : lo + CHUNK][inside].astype(np.int64) * grid.epochs
        a, b = a[inside], b[inside]
        first = (a - grid.start) // grid.length
        last = (b - 1 - grid.start) // grid.length
        combine.at(out, base + first, np.minimum(b, grid.start + (first + 1) * grid.length) - a)
        spans = last > first
        combine.at(
            out, base[spans] + last[spans], b[spans] - (grid.start + last[spans] * grid.length)
        )
        between = last - first >= 2
        # +1 after the head, -1 at the tail: each pair within one device's block
        np.add.at(marks, base[between] + first[between] + 1, 1)
        np.add.at(marks, base[between] + last[between], -1)
    return out, np.cumsum(marks[:-1])


def clipped_sums(device: np.ndarray, s: np.ndarray, e: np.ndarray, grid: Grid) -> np.ndarray:
    """Per (device, epoch) cell, device-major: the total length of the segments [s, e) of
    each device (codes below grid.count) inside that epoch."""
    out, whole = _scatter(device, s, e, grid, np.add)
    whole *= grid.length
    out += whole
    return out


def clipped_max(device: np.ndarray, s: np.ndarray, e: np.ndarray, grid: Grid) -> np.ndarray:
    """Per (device, epoch) cell, device-major: the longest piece of the segments inside
    that epoch (0 where none)."""
    out, whole = _scatter(device, s, e, grid, np.maximum)
    out[whole > 0] = grid.length
    return out


def cell_counts(device: np.ndarray, epoch: np.ndarray, grid: Grid) -> np.ndarray:
    """Per (device, epoch) cell, device-major: how many (device, epoch) pairs name it."""
    cells = device.astype(np.int64) * grid.epochs + epoch.astype(np.int64)
    return np.bincount(cells, minlength=grid.size).astype(np.int64)


def epoch_major(cells: np.ndarray, grid: Grid) -> np.ndarray:
    """Device-major cells in epoch-major order (`epoch x count + device`)."""
    return np.ascontiguousarray(cells.reshape(grid.count, grid.epochs).T).reshape(-1)
