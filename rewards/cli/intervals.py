"""`rewards intervals`: the stored online intervals.

The intervals service is imported inside the command, so that `rewards --help` starts
fast."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from rewards.cli._shell import SchedulerOption, err, fail, out, shell

intervals_app = typer.Typer(no_args_is_help=True, help="Online intervals.")


@intervals_app.command("export")
def intervals_export(
    out_file: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
) -> None:
    """Write every stored online interval (device_id, start, end) to Parquet."""
    from rewards.services.intervals import export_intervals

    if out_file.suffix != ".parquet":
        fail(f"--out {out_file}: expected a .parquet file")
    count = export_intervals(shell().engine(), out_file)
    out.print(f"wrote {count:,} intervals to {out_file}")


def _day(option: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r}: expected a UTC day as YYYY-MM-DD")


@intervals_app.command("rebuild")
def intervals_rebuild(
    first: Annotated[
        str | None, typer.Option("--from", help="First UTC day to rebuild (YYYY-MM-DD).")
    ] = None,
    last: Annotated[
        str | None, typer.Option("--to", help="Last UTC day to rebuild, included.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Rebuild everything by device shard over this many local processes, each "
            "reading the archive itself.",
        ),
    ] = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Recompute online intervals from the heartbeat archive under the configured
    season's policy, replacing the stored ones in one transaction: every interval (after a
    change of liveness_timeout, or to recover), or those of the days --from to --to (to
    recover a range, under the same liveness_timeout; widened to the whole stored intervals
    within a timeout of it: intervals lost beyond the range are not restored). With
    --workers or --scheduler (or the compute_scheduler setting, for a whole rebuild)
    everything is rebuilt by device shard, each shard's task reading the archive itself."""
    from rewards.services.archive import open_archive
    from rewards.services.intervals import rebuild_intervals

    days = (_day("--from", first), _day("--to", last))
    if (days[0] is None) != (days[1] is None):
        fail("--from and --to go together: give both, or neither to rebuild everything")
    if workers is not None and scheduler is not None:
        fail("--workers and --scheduler: give one (local processes, or a Dask cluster)")
    asked = workers is not None or scheduler is not None
    if asked and days[0] is not None:
        fail("a rebuild by shard (--workers, --scheduler) rebuilds everything: not with --from")
    sh = shell()
    sharded = asked or (sh.settings.compute_scheduler is not None and days[0] is None)
    archive = open_archive(sh.settings.archive_url)
    stored = rebuild_intervals(
        sh.engine(),
        archive,
        sh.policy,
        days=None if days[0] is None or days[1] is None else (days[0], days[1]),
        on_day=lambda day, beats: err.print(f"{day}: {beats:,} heartbeats", highlight=False),
        plan=sh.plan(workers=workers, scheduler=scheduler) if sharded else None,
        progress=lambda done: err.print(done, highlight=False),
    )
    scope = "" if days[0] is None else f" of {days[0]} to {days[1]}"
    out.print(f"rebuilt {stored:,} intervals{scope} from the archive at {sh.settings.archive_url}")
