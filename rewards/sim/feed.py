"""What the uptime API delivers of a simulated fleet, one window of delivery time at a time.

Pure: no I/O, no clock. The delivery feed is cut into windows of W (a divisor of a day,
chosen so a window holds about WINDOW_TARGET heartbeats). Window j holds every delivery
*received* in [start + jW, start + (j+1)W), in received order, so the feed is the whole
delivery log sorted by received time, and any window can be made alone:

* on time: every online slot, observed with a jitter under 2% of the period and received
  0.2 to 5 s later (both stateless draws of the slot's key), except the late ones;
* late, duplicate and conflicting deliveries are drawn per **extras epoch** (an hour, or
  W when W is longer) from Philox keyed (seed, EXTRAS, epoch, stream): a late heartbeat is
  received 1 to 6 hours late instead of on time; a duplicate is a second copy up to 30
  minutes after a first one; a conflict is a copy up to 2 hours after it with a
  disagreeing boot_id ("!" before the id wins rule 4.1's tie-break, "~" loses). Late
  heartbeats and their copies come from one stream (stream 0), copies of any slot's
  on-time delivery and malformed records from another (stream 1), so a window takes what
  falls due in it from the epochs of the last MAX_LATENESS, recomputed from their seeds,
  and needs only stream 0 of the epochs more than NEAR_US back: bounded look-back, no
  stored state.

Same seed, same deliveries: nothing depends on which windows were made before.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from rewards.core import HEARTBEATS, unique_heartbeats
from rewards.sim.records import BAD_RECORDS, LOG, NUMERIC, render_deliveries
from rewards.sim.timeline import (
    EXTRAS,
    HOUR,
    I64,
    KEY_BIAS,
    MINUTE,
    US,
    Geometry,
    Timeline,
    slot_keys,
    stream,
    uniform_int,
)

WINDOW_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 240, 360, 720, 1440)
WINDOW_TARGET = 200_000  # heartbeats a window should hold, at least
MAX_ON_TIME_US = 5 * US
LATE_US = (1 * HOUR, 6 * HOUR)
DUPLICATE_US = 30 * MINUTE
CONFLICT_US = 2 * HOUR
MAX_LATENESS = MAX_ON_TIME_US + LATE_US[1] + CONFLICT_US + MINUTE
NEAR_US = MAX_ON_TIME_US + CONFLICT_US + MINUTE  # the latest an on-time heartbeat's copy comes
# Salts of the stateless per-slot draws.
JITTER, DELAY, LATE_DELAY, BOOT_TAG = 11, 12, 13, 14
# Delivery kinds, in tie-break order.
ON_TIME, LATE, DUPLICATE, CONFLICT, BAD = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Rates:
    duplicate: float
    conflict: float
    late: float
    bad_record: float


def _typed(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame`'s columns as NUMERIC types them."""
    return frame.select(pl.col(name).cast(NUMERIC[name]) for name in frame.columns)


def _distinct(keys: I64) -> I64:
    """The distinct keys, sorted (numpy's hashing unique is slower on these sizes)."""
    ordered = np.sort(keys)
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])] if keys.size else ordered


def _member(keys: I64, sorted_set: I64) -> npt.NDArray[np.bool_]:
    """Whether each key is in `sorted_set`."""
    if not sorted_set.size:
        return np.zeros(keys.size, bool)
    at = np.minimum(np.searchsorted(sorted_set, keys), sorted_set.size - 1)
    return np.asarray(sorted_set[at] == keys)


def window_minutes(devices: int, period_us: int) -> int:
    """The shortest window (a divisor of a day) that holds WINDOW_TARGET heartbeats."""
    for minutes in WINDOW_MINUTES:
        if devices * minutes * MINUTE // period_us >= WINDOW_TARGET:
            return minutes
    return WINDOW_MINUTES[-1]


class Feed:
    """The heartbeat delivery feed of one fleet: windows made on demand from the seed,
    the last few kept (bounded memory)."""

    def __init__(
        self,
        *,
        seed: int,
        devices: int,
        geometry: Geometry,
        forced_us: int | None,
        rates: Rates,
    ) -> None:
        self.seed, self.devices, self.geometry, self.rates = seed, devices, geometry, rates
        self.timeline = Timeline(seed, devices, geometry, forced_us)
        self.window_us = window_minutes(devices, geometry.period_us) * MINUTE
        self.epoch_us = max(self.window_us, HOUR)
        self.epoch_slots = max(1, self.epoch_us // geometry.period_us)
        span = geometry.end_us + MAX_LATENESS - geometry.start_us
        self.windows = -(-span // self.window_us)
        self.epochs = -(-geometry.season_slots // self.epoch_slots)
        self._windows: OrderedDict[int, pl.DataFrame] = OrderedDict()
        self._epochs: OrderedDict[int, tuple[pl.DataFrame, I64, bool]] = OrderedDict()

    # -- per-slot draws -------------------------------------------------------------

    def _observed(self, device: I64, slot: I64, keys: I64) -> I64:
        g = self.geometry
        jitter = uniform_int(keys, self.seed * 1000 + JITTER, 0, max(1, g.period_us // 50))
        return g.start_us + self.timeline.traits.phase_us[device] + slot * g.period_us + jitter

    def _on_time(self, keys: I64) -> I64:
        return uniform_int(keys, self.seed * 1000 + DELAY, US // 5, MAX_ON_TIME_US)

    def _slots_due(self, low_us: int, high_us: int) -> tuple[I64, I64]:
        """Every (device, slot) whose due time is in [low_us, high_us), device-major."""
        g = self.geometry
        base = np.int64(g.start_us) + self.timeline.traits.phase_us
        first = np.clip(-(-(low_us - base) // g.period_us), 0, g.season_slots)
        last = np.clip(-(-(high_us - base) // g.period_us), 0, g.season_slots)
        counts = np.maximum(last - first, 0)
        device = np.repeat(np.arange(self.devices, dtype=np.int64), counts)
        starts = np.cumsum(counts) - counts
        slot = first[device] + np.arange(device.size, dtype=np.int64) - starts[device]
        return device, slot

    # -- extras epochs --------------------------------------------------------------

    def epoch(self, index: int, *, full: bool = True) -> tuple[pl.DataFrame, I64]:
        """Epoch `index`'s extra deliveries (not yet checked against the timeline) and its
        late slots' keys, sorted. Not `full`: only the late ones and their copies, all a
        window more than NEAR_US after the epoch can receive."""
        if index in self._epochs and (self._epochs[index][2] or not full):
            self._epochs.move_to_end(index)
            return self._epochs[index][:2]
        made = self._make_epoch(index, full=full)
        self._epochs[index] = (*made, full)
        self._epochs.move_to_end(index)
        while len(self._epochs) > MAX_LATENESS // self.epoch_us + 3:
            self._epochs.popitem(last=False)
        return made

    def _make_epoch(self, index: int, *, full: bool) -> tuple[pl.DataFrame, I64]:
        r, n, q = self.rates, self.devices, self.epoch_slots
        first = index * q
        # Late heartbeats and their copies come from one stream, on-time ones' copies and
        # malformed records from another: a window long after the epoch makes only the first.
        late_rng = stream(self.seed, EXTRAS, index, 0)
        count = late_rng.binomial(n * q, r.late)
        late_keys = _distinct(
            slot_keys(late_rng.integers(0, n, count), first + late_rng.integers(0, q, count))
        )
        late_device, late_slot = late_keys >> 32, (late_keys & 0xFFFF_FFFF) - KEY_BIAS
        copied = late_rng.random(late_keys.size) < r.duplicate
        contested = late_rng.random(late_keys.size) < r.conflict
        rows = [
            self._extras(late_device, late_slot, LATE, np.zeros(late_keys.size, np.int64)),
            self._extras(
                late_device[copied],
                late_slot[copied],
                DUPLICATE,
                late_rng.integers(0, DUPLICATE_US, int(copied.sum())),
            ),
            self._extras(
                late_device[contested],
                late_slot[contested],
                CONFLICT,
                late_rng.integers(0, CONFLICT_US, int(contested.sum())),
                late_rng.random(int(contested.sum())) < 0.5,
            ),
        ]
        if full:
            rng = stream(self.seed, EXTRAS, index, 1)
            count = rng.binomial(n * q, r.duplicate)
            device, slot = rng.integers(0, n, count), first + rng.integers(0, q, count)
            after = rng.integers(0, DUPLICATE_US, count)
            rows.append(self._extras(device, slot, DUPLICATE, after, on_time=True))
            count = rng.binomial(n * q, r.conflict)
            device, slot = rng.integers(0, n, count), first + rng.integers(0, q, count)
            after = rng.integers(0, CONFLICT_US, count)
            winning = rng.random(count) < 0.5
            rows.append(self._extras(device, slot, CONFLICT, after, winning, on_time=True))
            rows.append(self._bad_records(rng, first))
        # Unsorted: a window filters what falls due in it and sorts only that.
        return pl.concat(rows), late_keys

    def _extras(
        self,
        device: I64,
        slot: I64,
        kind: int,
        after: I64,
        winning: npt.NDArray[np.bool_] | None = None,
        *,
        on_time: bool = False,
    ) -> pl.DataFrame:
        """Deliveries of (device, slot) `after` its first one: on time, or hours late.
        A conflict's boot_id sorts before the true one when `winning`, else after it."""
        keys = slot_keys(device, slot)
        observed = self._observed(device, slot, keys)
        received = observed + self._on_time(keys) + after
        if not on_time:
            received += uniform_int(keys, self.seed * 1000 + LATE_DELAY, *LATE_US)
        prefix = np.zeros(device.size) if winning is None else np.where(winning, 1, 2)
        return _typed(
            pl.DataFrame(
                {
                    "device": device,
                    "slot": slot,
                    "observed_us": observed,
                    "received_us": received,
                    "kind": np.full(device.size, kind),
                    "prefix": prefix,
                    "bad": np.full(device.size, -1),
                }
            )
        )

    def _bad_records(self, rng: np.random.Generator, first: int) -> pl.DataFrame:
        """Malformed records received while the epoch's slots are due, in the season."""
        g = self.geometry
        low = g.start_us + first * g.period_us
        high = min(g.end_us, low + self.epoch_slots * g.period_us)
        count = rng.poisson(self.devices * self.epoch_slots * self.rates.bad_record)
        count = count if high > low else 0
        return _typed(
            pl.DataFrame(
                {
                    "device": np.full(count, -1),
                    "slot": np.arange(count),
                    "observed_us": np.zeros(count, np.int64),
                    "received_us": rng.integers(low, max(high, low + 1), count),
                    "kind": np.full(count, BAD),
                    "prefix": np.zeros(count),
                    "bad": rng.integers(0, len(BAD_RECORDS), count),
                }
            )
        )

    # -- windows --------------------------------------------------------------------

    def window(self, index: int) -> pl.DataFrame:
        """Window `index`'s deliveries (NUMERIC), in delivery order."""
        if index in self._windows:
            self._windows.move_to_end(index)
            return self._windows[index]
        made = self._make_window(index)
        self._windows[index] = made
        while len(self._windows) > 2:
            self._windows.popitem(last=False)
        return made

    def bounds(self, index: int) -> tuple[int, int]:
        """[low, high) of window `index`'s received times, in µs."""
        low = self.geometry.start_us + index * self.window_us
        return low, low + self.window_us

    def _epochs_of_slots(self, slot: I64) -> range:
        return range(int(slot.min()) // self.epoch_slots, int(slot.max()) // self.epoch_slots + 1)

    def _epochs_due(self, low_us: int, high_us: int) -> range:
        g = self.geometry
        span = self.epoch_slots * g.period_us
        first = (low_us - MAX_LATENESS - g.period_us - g.start_us) // span
        last = (high_us - g.start_us) // span
        return range(max(0, first), min(self.epochs - 1, last) + 1)

    def _make_window(self, index: int) -> pl.DataFrame:
        g = self.geometry
        low, high = self.bounds(index)
        device, slot = self._slots_due(low - MAX_ON_TIME_US - g.period_us // 50 - 1, high)
        keys = slot_keys(device, slot)
        observed = self._observed(device, slot, keys)
        received = observed + self._on_time(keys)
        keep = (received >= low) & (received < high) & (observed < g.end_us)
        if device.size:
            epochs = range(
                int(slot.min()) // self.epoch_slots, int(slot.max()) // self.epoch_slots + 1
            )
            late = np.sort(np.concatenate([self.epoch(e)[1] for e in epochs]))
            keep &= ~_member(keys, late)
        on_time = pl.DataFrame(
            {
                "device": device[keep],
                "slot": slot[keep],
                "observed_us": observed[keep],
                "received_us": received[keep],
                "kind": np.full(int(keep.sum()), ON_TIME),
                "prefix": np.zeros(int(keep.sum())),
                "bad": np.full(int(keep.sum()), -1),
            }
        )
        due = pl.col("received_us").is_between(low, high, "left")
        span = self.epoch_slots * g.period_us
        extras = pl.concat(
            [
                self.epoch(e, full=g.start_us + (e + 1) * span + g.period_us + NEAR_US >= low)[
                    0
                ].filter(due)
                for e in self._epochs_due(low, high)
            ]
        )
        extras = extras.filter((pl.col("kind") == BAD) | (pl.col("observed_us") < g.end_us))
        # The on-time rows come in (device, slot) order, in which the timeline's lookups
        # walk its arrays forwards; the few extras are looked up on their own.
        rows = pl.concat([self._with_states(_typed(on_time)), self._with_states(extras)])
        return rows.sort("received_us", "kind", "device", "slot", "prefix")

    def _with_states(self, rows: pl.DataFrame) -> pl.DataFrame:
        """`rows` with their boot and version, the offline slots' deliveries dropped."""
        good = rows.filter(pl.col("kind") != BAD)
        device = good.get_column("device").to_numpy()
        slot = good.get_column("slot").to_numpy()
        s = self.timeline.states(device, slot)
        good = good.with_columns(
            chunk=pl.Series(s.chunk, dtype=pl.Int32),
            boot=pl.Series(s.boot, dtype=pl.Int16),
            version=pl.Series(s.version, dtype=pl.Int8),
        ).filter(pl.Series(s.online))
        bad = rows.filter(pl.col("kind") == BAD).with_columns(
            chunk=pl.lit(0, pl.Int32), boot=pl.lit(0, pl.Int16), version=pl.lit(0, pl.Int8)
        )
        return pl.concat([good, bad]).select(list(NUMERIC))

    # -- what clients and checks see ------------------------------------------------

    def render(self, rows: pl.DataFrame) -> pl.DataFrame:
        """NUMERIC rows as the delivery log's columns (LOG): the API's strings."""
        return render_deliveries(rows, boot_salt=self.seed * 1000 + BOOT_TAG)

    def log(self) -> pl.DataFrame:
        """The whole delivery log (LOG), every window in order: for small fleets only."""
        return pl.concat([self.render(self.window(j)) for j in range(self.windows)]).cast(
            pl.Schema(LOG)
        )

    def truth(self, low_us: int, high_us: int) -> pl.DataFrame:
        """The deduplicated heartbeats (HEARTBEATS, rule 4.1) observed in [low_us, high_us):
        what a correct client stores of them once every delivery has arrived."""
        g = self.geometry
        device, slot = self._slots_due(low_us - g.period_us // 50 - 1, high_us)
        keys = slot_keys(device, slot)
        base = pl.DataFrame(
            {
                "device": device,
                "slot": slot,
                "observed_us": self._observed(device, slot, keys),
                "received_us": np.zeros(device.size, np.int64),
                "kind": np.full(device.size, ON_TIME),
                "prefix": np.zeros(device.size),
                "bad": np.full(device.size, -1),
            }
        )
        parts = [_typed(base)]
        if device.size:
            span = range(
                int(slot.min()) // self.epoch_slots, int(slot.max()) // self.epoch_slots + 1
            )
            for e in span:
                parts.append(self._make_epoch(e, full=True)[0].filter(pl.col("kind") == CONFLICT))
        rows = pl.concat(parts).filter(
            pl.col("observed_us").is_between(low_us, min(high_us, g.end_us), closed="left")
        )
        good = self.render(self._with_states(rows)).select(
            "device_id",
            pl.col("observed_us").cast(pl.Datetime("us", "UTC")).alias("observed_at"),
            "boot_id",
            "agent_version",
        )
        return unique_heartbeats(good.cast(pl.Schema(HEARTBEATS)))
