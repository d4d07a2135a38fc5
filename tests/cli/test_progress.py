"""A run's progress lines on stderr: elapsed time and a linear estimate of the time left."""

from __future__ import annotations

import pytest

from rewards.cli._progress import StageProgress, duration, with_eta
from rewards.cli._shell import err


def test_a_progress_line_gets_the_elapsed_time_and_the_time_left_at_the_same_pace() -> None:
    assert with_eta("compute: 64 of 160 shards", 12.0) == (
        "compute: 64 of 160 shards, 12 s elapsed, about 18 s left"
    )
    assert with_eta("order: 2 of 5 device ranges", 100.0) == (
        "order: 2 of 5 device ranges, 1 min 40 s elapsed, about 2 min 30 s left"
    )
    assert with_eta("rows: 3 of 3 shards", 4.4).endswith("4 s elapsed, about 0 s left")


def test_before_the_first_unit_is_done_there_is_no_estimate() -> None:
    assert with_eta("assess: 0 of 8 shards", 3.0) == "assess: 0 of 8 shards, 3 s elapsed, ETA –"  # noqa: RUF001 - the en dash it prints


@pytest.mark.parametrize(
    "text",
    [
        "reading and checking the inputs",
        "splitting into 4 shards",
        "compute: 64 of shards",
        "compute: 64 of 160",
        "compute: x of 160 shards",
        "compute 64 of 160 shards",
        "",
    ],
)
def test_any_other_text_passes_through_unchanged(text: str) -> None:
    assert with_eta(text, 5.0) == text


def test_durations_are_whole_seconds_then_minutes_and_seconds() -> None:
    assert [duration(s) for s in (0.4, 59.4, 60, 61.6, 3725)] == [
        "0 s",
        "59 s",
        "1 min 00 s",
        "1 min 02 s",
        "62 min 05 s",
    ]


def test_a_stage_is_timed_from_the_line_before_its_first() -> None:
    """Shards report when a group is done: `histograms` began as `assess` ended at 30 s."""
    ticks = iter([0.0, 10.0, 20.0, 30.0, 50.0])
    shown = StageProgress("snapshot", clock=lambda: next(ticks))
    with err.capture() as captured:
        shown.on_stage("compute")  # 10 s
        shown.on_progress("assess: 1 of 2 shards")  # 20 s
        shown.on_progress("assess: 2 of 2 shards")  # 30 s
        shown.on_progress("histograms: 1 of 4 shards")  # 50 s
    assert captured.get().splitlines() == [
        "snapshot: compute ...",
        "  assess: 1 of 2 shards, 10 s elapsed, about 10 s left",
        "  assess: 2 of 2 shards, 20 s elapsed, about 0 s left",
        "  histograms: 1 of 4 shards, 20 s elapsed, about 1 min 00 s left",
    ]
