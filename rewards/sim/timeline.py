"""Who is online when, for any device at any moment, without simulating what came before.

Pure numpy: no I/O, no clock. Time is counted in heartbeat slots: device d's slot k is due
at `start + phase_d + k * P`. A device's life is cut into **chunks** of about a day
(`S = day // P` slots), shifted per device by its own chunk phase so that chunk edges are
spread over the day. Each chunk begins with the agent's daily restart (a new boot, with a
gap of 0 to 12 slots) and holds a Poisson number of events at uniform slots:

* restart (45%): new boot after 1 to 12 slots,
* network blip (30%): same boot, 1 to 6 slots missed,
* upgrade (7%): new boot after 1 to 5 slots,
* outage (18%): new boot after 1 to 9 hours.

A chunk is drawn from its own counter-based generator, Philox keyed by (seed, block of
devices, chunk), vectorised over a block of devices, so any chunk can be made on demand.
No gap outlasts a chunk, so a slot's state depends on its own chunk and the one before: a
bounded look-back. Boots are named by (chunk, number of boot events so far in the chunk).

Per-device traits (drawn once, O(devices)) carry what spans the season: the heartbeat
phase, joiners (7%, arriving in the first half) and leavers (5%, leaving in the second
half), flaky devices (13%, six times the event rate), the agent version, and in the
`april-2024` scenario the forced upgrade: everyone goes silent within the minute before
FORCED_UPGRADE; 2% return within three slots, 85% after a Gamma(2, 8 h) pause, 13% never;
those who return run FIXED_VERSION and move to 0.10.1 at a rollout a few days later.

Density (DESIGN 8: two to three online intervals per device-day): the daily restart splits
an interval when its gap is at least one slot (70%); the events come at 1.7 a chunk for
steady devices and 8.5 for flaky ones (2.6 over the fleet), and every event gap is at
least one slot, more than the 1.5-period liveness timeout. That is 3.3 splits a
device-day before gaps overlap (outages of hours swallow the events inside them, most on
flaky devices) and before joiners, leavers and the forced upgrade's silence: measured,
2.5 intervals per device-day (tests/sim/test_scale.py).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

US = 1_000_000
MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR
BLOCK = 65_536  # devices drawn together; draws are per whole block, so fleets share prefixes
NEVER = np.int64(1 << 40)  # a slot no season reaches
KEY_BIAS = 1 << 30  # slots before the season (chunk -1) stay positive inside a key

# Stream tags: each kind of draw has its own generator family.
TRAITS, CHUNKS, EXTRAS = 1, 2, 3

OLD_VERSIONS = ("0.9.8", "0.9.9", "0.9.10")
FIXED_VERSION = "0.10.0"
VERSIONS = (*OLD_VERSIONS, FIXED_VERSION, "0.10.1")
FIXED, ROLLED = 3, 4  # codes in VERSIONS

RATE_STEADY, RATE_FLAKY = 1.7, 8.5  # events per chunk
KIND_P = np.array([0.45, 0.30, 0.07, 0.18])  # restart, blip, upgrade, outage
BOOTING_KINDS = np.array([True, False, True, True])
QUICK_RESTART_SHARE = 0.3  # daily restarts that miss no heartbeat

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def stream(seed: int, *key: int) -> np.random.Generator:
    """The counter-based generator of one (seed, tag, ...) key."""
    return np.random.Generator(np.random.Philox(np.random.SeedSequence([seed, *key])))


def slot_keys(device: I64, slot: I64) -> I64:
    """(device, slot) as one sortable int64: device major, slot minor."""
    return (device.astype(np.int64) << 32) | (slot.astype(np.int64) + KEY_BIAS)


def mix(keys: I64, salt: int) -> npt.NDArray[np.uint64]:
    """splitmix64 of keys ^ salt: a stateless, random-access draw per key."""
    x = keys.astype(np.uint64) ^ np.uint64(salt & 0xFFFF_FFFF_FFFF_FFFF)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(x ^ (x >> np.uint64(31)))


def uniform_int(keys: I64, salt: int, low: int, high: int) -> I64:
    """A per-key draw in [low, high), stateless."""
    return low + (mix(keys, salt) % np.uint64(max(1, high - low))).astype(np.int64)


@dataclass(frozen=True)
class Geometry:
    """The slot arithmetic of one fleet: period, chunk length and season length in slots."""

    start_us: int
    end_us: int
    period_us: int

    @property
    def chunk_slots(self) -> int:
        return max(2, DAY // self.period_us)

    @property
    def season_slots(self) -> int:
        return -(-(self.end_us - self.start_us) // self.period_us)

    def slots(self, hours: float) -> int:
        return max(1, round(hours * HOUR / self.period_us))


@dataclass(frozen=True)
class Traits:
    """What each device carries through the season; arrays indexed by device number."""

    phase_us: I64  # heartbeat phase within the period
    chunk_phase: I64  # where the device's chunks begin, in slots
    join: I64  # first slot present
    leave: I64  # first slot absent
    flaky: Bools
    old_version: I64  # code in VERSIONS
    forced_down: I64  # first silent slot of the forced upgrade (NEVER without it)
    forced_up: I64  # first slot back (NEVER: never returns)
    rollout: I64  # first slot on 0.10.1 (NEVER: never)
    rollout_gap: I64  # slots missed at the rollout


def device_traits(seed: int, devices: int, geometry: Geometry, forced_us: int | None) -> Traits:
    """Every device's traits, drawn per block of BLOCK devices from (seed, TRAITS, block)."""
    g = geometry
    parts: list[dict[str, I64]] = []
    for block in range(-(-devices // BLOCK)):
        rng = stream(seed, TRAITS, block)
        kind = rng.choice(4, BLOCK, p=[0.75, 0.13, 0.07, 0.05])  # steady flaky joiner leaver
        half = max(1, g.season_slots // 2)
        phase = rng.integers(0, g.period_us, BLOCK)
        join = np.where(kind == 2, rng.integers(0, half, BLOCK), 0)
        leave = np.where(kind == 3, g.season_slots - rng.integers(0, half, BLOCK), NEVER)
        silent_us = rng.integers(0, MINUTE, BLOCK)
        fate = rng.random(BLOCK)
        quick = rng.integers(1, 4, BLOCK)
        pause_us = (rng.gamma(2.0, 8 * HOUR, BLOCK) + 5 * MINUTE).astype(np.int64)
        rollout_us = (rng.exponential(3 * DAY, BLOCK) + 6 * HOUR).astype(np.int64)
        part = {
            "phase_us": phase,
            "chunk_phase": rng.integers(0, g.chunk_slots, BLOCK),
            "join": join,
            "leave": leave,
            "flaky": (kind == 1).astype(np.int64),
            "old_version": rng.integers(0, len(OLD_VERSIONS), BLOCK),
            "rollout_gap": rng.integers(1, 6, BLOCK),
        }
        if forced_us is None:
            never = np.full(BLOCK, NEVER)
            part |= {"forced_down": never, "forced_up": never, "rollout": never}
        else:
            down = -(-(forced_us - silent_us - g.start_us - phase) // g.period_us)
            up = np.where(fate < 0.02, down + quick, down + -(-pause_us // g.period_us))
            up = np.where(fate < 0.87, up, NEVER)
            part |= {
                "forced_down": down,
                "forced_up": up,
                "rollout": np.where(up < NEVER, up + rollout_us // g.period_us, NEVER),
                "leave": np.where(up < NEVER, leave, np.minimum(leave, down)),
            }
        parts.append(part)
    columns = {
        name: np.concatenate([p[name] for p in parts])[:devices].astype(np.int64)
        for name in parts[0]
    }
    flaky = columns.pop("flaky").astype(bool)
    return Traits(flaky=flaky, **columns)


@dataclass(frozen=True)
class Chunk:
    """One chunk index's events over the whole fleet, as sorted (device, slot) keys."""

    down_starts: I64
    down_ends: I64
    boots: I64


def _gaps(rng: np.random.Generator, kind: I64, g: Geometry) -> I64:
    low = np.array([1, 1, 1, g.slots(1)])
    high = np.array([13, 7, 6, g.slots(9) + 1])
    high = np.minimum(high, g.chunk_slots - 1)
    span = np.maximum(high - low, 1)
    return np.asarray(low[kind] + (rng.random(kind.size) * span[kind]).astype(np.int64))


def make_chunk(seed: int, traits: Traits, g: Geometry, chunk: int) -> Chunk:
    """The events of chunk `chunk` of every device (see the module docstring)."""
    devices = traits.phase_us.size
    S = g.chunk_slots
    starts, ends, boots = [], [], []
    for block in range(-(-devices // BLOCK)):
        rng = stream(seed, CHUNKS, block, chunk + 1)  # chunk -1 holds the season's first edge
        first_gap = np.where(rng.random(BLOCK) < QUICK_RESTART_SHARE, 0, rng.integers(1, 13, BLOCK))
        lo, hi = block * BLOCK, min(devices, (block + 1) * BLOCK)
        flaky = np.zeros(BLOCK, bool)
        flaky[: hi - lo] = traits.flaky[lo:hi]
        counts = rng.poisson(np.where(flaky, RATE_FLAKY, RATE_STEADY))
        owner = np.repeat(np.arange(BLOCK), counts)
        offset = rng.integers(0, S, owner.size)
        kind = np.searchsorted(np.cumsum(KIND_P), rng.random(owner.size), side="right")
        kind = np.minimum(kind, KIND_P.size - 1)
        gap = _gaps(rng, kind, g)
        real = owner < hi - lo
        owner, offset, kind, gap = owner[real], offset[real], kind[real], gap[real]
        device = lo + np.arange(hi - lo)
        edge = chunk * S - traits.chunk_phase[lo:hi]  # the daily restart
        event_device = np.concatenate([device, lo + owner])
        event_slot = np.concatenate([edge, edge[owner] + offset])
        event_gap = np.concatenate([first_gap[: hi - lo], gap])
        booting = np.concatenate([np.ones(hi - lo, bool), BOOTING_KINDS[kind]])
        # The forced upgrade's return and the 0.10.1 rollout are boots of the chunk they
        # fall in; the forced silence itself is a trait (it can outlast a chunk).
        back = traits.forced_up[lo:hi]
        roll = traits.rollout[lo:hi]
        in_chunk_back = (back >= edge) & (back < edge + S)
        in_chunk_roll = (roll >= edge) & (roll < edge + S)
        event_device = np.concatenate([event_device, device[in_chunk_back], device[in_chunk_roll]])
        event_slot = np.concatenate([event_slot, back[in_chunk_back], roll[in_chunk_roll]])
        event_gap = np.concatenate(
            [
                event_gap,
                np.zeros(in_chunk_back.sum(), np.int64),
                traits.rollout_gap[lo:hi][in_chunk_roll],
            ]
        )
        booting = np.concatenate(
            [booting, np.ones(in_chunk_back.sum() + in_chunk_roll.sum(), bool)]
        )
        down = event_gap > 0
        starts.append(slot_keys(event_device[down], event_slot[down]))
        ends.append(slot_keys(event_device[down], event_slot[down] + event_gap[down]))
        boots.append(slot_keys(event_device[booting], event_slot[booting]))
    return Chunk(
        down_starts=np.sort(np.concatenate(starts)),
        down_ends=np.sort(np.concatenate(ends)),
        boots=np.sort(np.concatenate(boots)),
    )


@dataclass(frozen=True)
class SlotStates:
    """The state of queried (device, slot) pairs: online, and if so under which boot."""

    online: Bools
    chunk: I64
    boot: I64  # boot events so far in the chunk, at least 1
    version: I64  # code in VERSIONS


class Timeline:
    """Answers "is device d online at slot k, under which boot and version?" for any pairs,
    making the chunks it needs on demand and keeping the last few (bounded memory)."""

    def __init__(self, seed: int, devices: int, geometry: Geometry, forced_us: int | None):
        self.seed = seed
        self.geometry = geometry
        self.traits = device_traits(seed, devices, geometry, forced_us)
        self._chunks: OrderedDict[int, Chunk] = OrderedDict()

    def chunk(self, index: int) -> Chunk:
        if index in self._chunks:
            self._chunks.move_to_end(index)
            return self._chunks[index]
        made = make_chunk(self.seed, self.traits, self.geometry, index)
        self._chunks[index] = made
        while len(self._chunks) > 3:  # a window needs its day's chunk and the two before
            self._chunks.popitem(last=False)
        return made

    def states(self, device: I64, slot: I64) -> SlotStates:
        """The state of each (device[i], slot[i])."""
        t, S = self.traits, self.geometry.chunk_slots
        chunk = (slot + t.chunk_phase[device]) // S
        keys = slot_keys(device, slot)
        covered = np.zeros(device.size, np.int64)
        boot = np.zeros(device.size, np.int64)
        if device.size:
            for index in range(int(chunk.min()) - 1, int(chunk.max()) + 1):
                c = self.chunk(index)
                covered += np.searchsorted(c.down_starts, keys, side="right")
                covered -= np.searchsorted(c.down_ends, keys, side="right")
                mine = chunk == index
                if mine.any():
                    edge = slot_keys(device[mine], index * S - t.chunk_phase[device[mine]])
                    boot[mine] = np.searchsorted(c.boots, keys[mine], side="right")
                    boot[mine] -= np.searchsorted(c.boots, edge, side="left")
        present = (slot >= t.join[device]) & (slot < t.leave[device])
        silenced = (slot >= t.forced_down[device]) & (slot < t.forced_up[device])
        version = t.old_version[device]
        version = np.where(slot >= t.forced_up[device], FIXED, version)
        version = np.where(slot >= t.rollout[device], ROLLED, version)
        return SlotStates(
            online=present & ~silenced & (covered == 0),
            chunk=chunk,
            boot=boot,
            version=version,
        )
