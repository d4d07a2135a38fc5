"""The `rewards` command: parse, call one service, print. Bad input is a message, not a
traceback; exit codes: 0 done, 1 the work failed (see the message), 2 bad input or
settings, 3 another process holds the job. A service's refusal (`ServiceError`) is
answered here once, in `main`: its message, exit 3 when busy, 1 when something the work
needs is unavailable (a compute cluster), else 2.

This module is the command tree: the root app with its commands and groups, in the order
`rewards --help` lists them; each group's commands live in their own module."""

from __future__ import annotations

import sys

import typer

from rewards.cli import (
    audit,
    bundles,  # noqa: F401 - adds `snapshot publish-files`
    database,
    demo,
    eligibility,
    incidents,
    ingest,
    intervals,
    serve,
    simulator,
    snapshots,
)
from rewards.cli._shell import err
from rewards.cli.serve import worker_app
from rewards.services.errors import ServiceError

# worker_app: `rewards api --workers N` has uvicorn import it as rewards.cli:worker_app
__all__ = ["app", "main", "worker_app"]

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Ignition uptime and rewards snapshot engine."
)
app.command("ingest")(ingest.ingest)
app.command("dev-token")(serve.dev_token)
app.command("api")(serve.api)
app.command("serve")(serve.serve)
app.command("scheduler")(serve.scheduler)
app.command("runs")(serve.runs)
app.command("demo")(demo.demo)
app.add_typer(database.db_app, name="db")
app.add_typer(simulator.sim_app, name="sim")
app.add_typer(intervals.intervals_app, name="intervals")
app.add_typer(eligibility.eligibility_app, name="eligibility")
app.add_typer(incidents.incidents_app, name="incidents")
app.add_typer(snapshots.snapshot_app, name="snapshot")
app.add_typer(audit.audit_app, name="audit")


def main(args: list[str] | None = None) -> None:
    """The `rewards` command on `args` (default: the process's own); always exits."""
    try:
        app(args=args, prog_name="rewards")
    except ServiceError as exc:  # a use case's refusal, answered the same way by every command
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit({"busy": 3, "unavailable": 1}.get(exc.kind, 2))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
