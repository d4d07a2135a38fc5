"""`rewards audit`: the append-only, hash-chained audit log.

The audit log's service is imported inside the command, so that `rewards --help`
starts fast."""

from __future__ import annotations

import typer

from rewards.cli._shell import AsJson, err, out, plain, print_json, shell

audit_app = typer.Typer(no_args_is_help=True, help="The append-only, hash-chained audit log.")


@audit_app.command("verify")
def audit_verify(as_json: AsJson = False) -> None:
    """Recompute the audit log's hash chain; exit 1 naming the first entries that break it.
    --json prints the report (intact, entries, problems), broken or not."""
    from rewards.services.audit_log import verify_audit_log

    report = verify_audit_log(shell().engine())
    for problem in report.problems:
        err.print(f"[bold red]broken:[/] {problem}", highlight=False)
    if as_json:
        print_json({"intact": report.intact, **plain(report)})
    elif report.intact:
        out.print(f"audit log intact: {report.entries:,} entries, chain and head agree")
    if not report.intact:
        raise typer.Exit(1)
