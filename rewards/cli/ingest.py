"""`rewards ingest`: pull devices and heartbeats from the uptime API once, until caught up.
A top-level command, registered on the root app in rewards/cli/__init__.py.

The ingest job and its services are imported inside the command, so that `rewards --help`
starts fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from rewards.cli._shell import err, fail, out, shell, utc_now

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.status import Status

    from rewards.services.ingest import IngestReport


def ingest(
    once: Annotated[bool, typer.Option("--once", help="Pull until caught up, then exit.")] = False,
    stream: Annotated[str, typer.Option(help="devices, heartbeats or all.")] = "all",
    max_pages: Annotated[
        int | None,
        typer.Option(min=1, help="Stop after this many pages of each stream (a bounded run)."),
    ] = None,
) -> None:
    """Pull devices and heartbeats from the uptime API until caught up (or --max-pages)."""
    from jobs.ingest import JOB_IDS, pull_job
    from rewards.services.runs import JobBusy, exclusive_run

    if not once:
        fail("use `rewards ingest --once` for one pull, or `rewards scheduler` to keep pulling")
    streams = ["devices", "heartbeats"] if stream == "all" else [stream]
    if any(s not in JOB_IDS for s in streams):
        fail(f"--stream {stream}: expected devices, heartbeats or all")
    sh = shell()
    engine = sh.engine()
    failed = False
    for name in streams:
        with _progress(name) as on_page:
            try:
                with exclusive_run(
                    engine,
                    job_id=JOB_IDS[name],
                    trigger="manual",
                    clock=utc_now,
                    ttl=sh.settings.job_lock,
                ) as context:
                    pull_job(
                        engine,
                        sh.settings,
                        sh.policy,
                        name,
                        clock=utc_now,
                        on_page=on_page,
                        max_pages=max_pages,
                    )(context)
            except JobBusy as busy:
                fail(str(busy), 3)
        summary = (
            f"{name}: {context.pages:,} pages, {context.pulled:,} records, "
            f"{context.stored:,} stored, {context.quarantined:,} quarantined"
        )
        if context.error:
            failed = True
            err.print(f"[bold red]{summary}; stopped:[/] {context.error}", highlight=False)
        elif max_pages is not None and context.pages >= max_pages:
            out.print(summary + f"; stopped after --max-pages {max_pages}", highlight=False)
        else:
            out.print(summary + "; caught up", highlight=False)
    if failed:
        raise typer.Exit(1)


class _progress:
    """A live line of counts while a stream is pulled, when stderr is a terminal."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.status: Status | None = None

    def __enter__(self) -> Callable[[IngestReport], None]:
        import time

        started = time.monotonic()
        if err.is_terminal:
            self.status = err.status(f"pulling {self.stream} ...")
            self.status.__enter__()

        def on_page(report: IngestReport) -> None:
            if self.status is not None:
                rate = report.pulled / max(time.monotonic() - started, 1e-9)
                self.status.update(
                    f"pulling {self.stream}: {report.pages:,} pages, {report.pulled:,} records "
                    f"({rate:,.0f}/s), {report.quarantined:,} quarantined, "
                    f"{report.retries} retries"
                )

        return on_page

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.__exit__(None, None, None)
