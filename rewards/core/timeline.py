"""What a device page draws: each epoch's time as online, bridged, credited and uncounted
pieces, and each gap in words (issue 6). Pure: frames and plain values in and out.

The pieces come from the same functions the pipeline uses (gaps, bridge_gaps,
credited_windows), so the picture cannot disagree with the numbers: online pieces are the
online intervals, a bridged gap is bridged whole, a gap that is not bridged is credited
where confirmed incidents' windows cover it and uncounted elsewhere. Time before a device's
first interval or after its last is not a gap; the page shows it as empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from rewards.core.epochs import clip_to_epochs
from rewards.core.explanations import duration_words
from rewards.core.frames import INCIDENTS, empty, to_us
from rewards.core.gaps import bridge_gaps, gaps
from rewards.core.incidents import credited_windows
from rewards.core.policy import SeasonPolicy

KINDS = ("online", "bridged", "credited", "uncounted")


@dataclass(frozen=True)
class Gap:
    """One gap between two online intervals, and what became of it."""

    device_id: str
    g0: int  # µs
    g1: int
    bridged: bool
    denied: bool  # bridgeable, but over the epoch's bridge limit
    credited: tuple[tuple[int, int], ...]  # merged credited windows inside the gap
    incidents: tuple[str, ...]  # incidents whose windows credit it

    @property
    def credited_us(self) -> int:
        return sum(e - s for s, e in self.credited)

    def uncounted(self) -> list[tuple[int, int]]:
        """The gap's pieces that neither a bridge nor an incident covers."""
        if self.bridged:
            return []
        pieces, at = [], self.g0
        for s, e in self.credited:
            if s > at:
                pieces.append((at, s))
            at = max(at, e)
        if at < self.g1:
            pieces.append((at, self.g1))
        return pieces


def _merged(windows: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(windows):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return tuple(out)


def device_gaps(
    intervals: pl.DataFrame,
    policy: SeasonPolicy,
    *,
    incidents: pl.DataFrame | None = None,
    incident_versions: pl.DataFrame | None = None,
) -> list[Gap]:
    """Every gap of the devices in `intervals` (INTERVALS), by device and start, with its
    bridge and its incident credit (`incidents`: confirmed ones, INCIDENTS)."""
    iv = intervals.with_columns(pl.col("start").cast(pl.Int64), pl.col("end").cast(pl.Int64))
    marked = bridge_gaps(gaps(iv), policy)
    incidents = empty(INCIDENTS) if incidents is None else incidents
    windows = credited_windows(marked, incidents, policy, incident_versions)
    by_gap: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    for device, g0, c0, c1, incident in windows.select(
        "device_id", "g0", "c0", "c1", "incident_id"
    ).iter_rows():
        by_gap.setdefault((device, g0), []).append((c0, c1, incident))
    found = []
    for device, g0, g1, bridged, denied in marked.select(
        "device_id", "g0", "g1", "bridged", "denied"
    ).iter_rows():
        credit = [] if bridged else by_gap.get((device, g0), [])
        found.append(
            Gap(
                device_id=device,
                g0=g0,
                g1=g1,
                bridged=bool(bridged),
                denied=bool(denied),
                credited=_merged([(s, e) for s, e, _ in credit]),
                incidents=tuple(sorted({i for _, _, i in credit})),
            )
        )
    return found


def timeline_segments(
    intervals: pl.DataFrame, found: list[Gap], policy: SeasonPolicy
) -> pl.DataFrame:
    """The pieces to draw: device_id, epoch, kind (one of KINDS), s, e (µs), clipped to the
    season's epochs, by device, epoch and start."""
    pieces: list[tuple[str, int, int, str]] = [
        (d, int(s), int(e), "online")
        for d, s, e in intervals.select(
            "device_id", pl.col("start").cast(pl.Int64), pl.col("end").cast(pl.Int64)
        ).iter_rows()
    ]
    for gap in found:
        if gap.bridged:
            pieces.append((gap.device_id, gap.g0, gap.g1, "bridged"))
            continue
        pieces += [(gap.device_id, s, e, "credited") for s, e in gap.credited]
        pieces += [(gap.device_id, s, e, "uncounted") for s, e in gap.uncounted()]
    frame = pl.DataFrame(
        pieces,
        schema={"device_id": pl.String, "s": pl.Int64, "e": pl.Int64, "kind": pl.String},
        orient="row",
    )
    return (
        clip_to_epochs(frame, policy)
        .select("device_id", "epoch", "kind", "s", "e")
        .sort("device_id", "epoch", "s")
    )


def _clock(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M")


def gap_words(gap: Gap, policy: SeasonPolicy, deadlines: Mapping[str, int]) -> str:
    """One gap in words, e.g. "Down 2024-04-22 08:05, back 3 h 12 min later, within the
    48 h recovery deadline of incident inc-1: credited." `deadlines`: recovery deadline (µs)
    per incident id."""
    length = duration_words((gap.g1 - gap.g0) / 1_000_000)
    head = f"Down {_clock(gap.g0)}, back {length} later"
    if gap.bridged:
        return f"{head}, after a restart: bridged (restart grace)."
    if gap.incidents:
        names = ", ".join(gap.incidents)
        hours = sorted({duration_words(deadlines.get(i, 0) / 1_000_000) for i in gap.incidents})
        within = f"within the {' / '.join(hours)} recovery deadline of incident {names}"
        missing = sum(e - s for s, e in gap.uncounted())
        if not missing:
            return f"{head}, {within}: credited."
        return (
            f"{head}: {duration_words(gap.credited_us / 1_000_000)} credited ({within}); "
            f"{duration_words(missing / 1_000_000)} not counted."
        )
    if gap.denied:
        return f"{head}, after a restart, but the epoch's bridges were used up: not counted."
    grace = duration_words(policy.restart_grace_us / 1_000_000)
    if gap.g1 - gap.g0 <= policy.restart_grace_us:
        return f"{head}, without a restart (same boot and agent): not counted."
    return f"{head}: longer than the {grace} restart grace, and no incident covers it: not counted."


def epoch_bounds(policy: SeasonPolicy, epoch: int) -> tuple[int, int]:
    """[start, end) of `epoch` in µs."""
    start = to_us(policy.start) + epoch * policy.epoch_length_us
    return start, start + policy.epoch_length_us


def grid_state(row: Mapping[str, Any], policy: SeasonPolicy) -> str:
    """A device-epoch's cell on the supplier's grid, from its view row: "eligible",
    "helped" (eligible only thanks to bridges or incident credit: online time alone falls
    short of the minimum), "ineligible" or "silent" (no heartbeats)."""
    if row["eligible"]:
        online_us = round(row["online_s"] * 1_000_000)  # reported seconds are whole µs
        return "helped" if online_us < policy.min_counted_us else "eligible"
    if row["reason"] == "NO_HEARTBEATS":
        return "silent"
    return "ineligible"
