"""`rewards intervals`: the stored online intervals.

The intervals service is imported inside the command, so that `rewards --help` starts
fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rewards.cli._shell import err, fail, out, shell

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


@intervals_app.command("rebuild")
def intervals_rebuild() -> None:
    """Recompute every online interval from the heartbeat archive under the configured
    season's policy (after a change of liveness_timeout, or to recover), replacing the
    stored ones in one transaction."""
    from rewards.services.archive import open_archive
    from rewards.services.intervals import rebuild_intervals

    sh = shell()
    archive = open_archive(sh.settings.archive_url)
    stored = rebuild_intervals(
        sh.engine(),
        archive,
        sh.policy,
        on_day=lambda day, beats: err.print(f"{day}: {beats:,} heartbeats", highlight=False),
    )
    out.print(f"rebuilt {stored:,} intervals from the archive at {sh.settings.archive_url}")
