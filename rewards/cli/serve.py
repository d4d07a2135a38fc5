"""Long-running processes and what goes with them: `rewards api`, `serve` and `scheduler`,
the job runs they record (`runs`), and development tokens for the API (`dev-token`): top-level
commands, registered on the root app in rewards/cli/__init__.py.

uvicorn, the API, the web pages and the scheduler are imported inside each command, so that
`rewards --help` and the other commands never load them."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Annotated

import typer

from rewards.cli._shell import AsJson, Shell, err, fail, out, plain, print_json, shell, utc_now


def dev_token(
    sub: Annotated[str, typer.Option(help="The subject: a supplier's owner_id, or a person.")],
    role: Annotated[list[str], typer.Option(help="supplier, finance or admin (repeatable).")],
    ttl_minutes: Annotated[int, typer.Option(min=1, max=24 * 60)] = 60,
) -> None:
    """Sign a development token (only when dev_issuer_enabled is set; never in production)."""
    from rewards.api.verifier import dev_issuer

    sh = shell()
    if not sh.settings.dev_issuer_enabled:
        fail("the development issuer is off: set REWARDS_DEV_ISSUER_ENABLED=true to use it")
    try:
        token = dev_issuer(sh.settings).token(
            sub, role, now=utc_now(), ttl=timedelta(minutes=ttl_minutes)
        )
    except ValueError as exc:
        fail(str(exc))
    typer.echo(token)


Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]


def _api_app(sh: Shell) -> object:
    from rewards.api.verifier import make_verifier
    from rewards.web.app import create_site

    verifier = make_verifier(sh.settings)
    if verifier is None:
        err.print(
            "warning: no token issuer configured (auth_issuer and auth_jwks_url, or "
            "dev_issuer_enabled): every authenticated route will answer 401",
            highlight=False,
        )
    return create_site(sh.engine(serving=True), sh.settings, verifier)


def _say_where(sh: Shell, host: str, port: int) -> None:
    """Where the pages are, and whose address they follow."""
    configured = sh.settings.public_url
    if configured:
        err.print(
            f"pages: {configured.rstrip('/')}/app (public_url: sign-in and forms work at that "
            "address only)",
            highlight=False,
        )
        return
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 (a comparison)
    err.print(
        f"pages: http://{shown}:{port}/app (public_url is not set: the pages work on whatever "
        "address a browser uses; set it when a real identity provider must call back)",
        highlight=False,
    )


def worker_app() -> object:
    """The API app of one uvicorn worker process (settings from the environment)."""
    return _api_app(shell())


def api(
    host: Host = "127.0.0.1",
    port: Port = 8700,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes (each keeps its own rate-limit and surge counts).",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (uvicorn)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _say_where(shell(), host, port)
    if workers == 1:
        uvicorn.run(_api_app(shell()), host=host, port=port, log_level="info", proxy_headers=False)  # type: ignore[arg-type]
    else:
        uvicorn.run(
            "rewards.cli:worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level="info",
            proxy_headers=False,  # the API decides whom to trust (trusted_proxies)
        )


def serve(host: Host = "127.0.0.1", port: Port = 8700) -> None:
    """Serve the HTTP API and run the scheduler (as leader or standby) in one process."""
    import uvicorn

    from jobs.scheduler import run_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sh = shell()
    _say_where(sh, host, port)
    stop = threading.Event()
    scheduler = threading.Thread(
        target=run_scheduler, args=(sh.engine(), sh.settings, sh.policy), kwargs={"stop": stop}
    )
    scheduler.start()
    try:
        uvicorn.run(_api_app(sh), host=host, port=port, log_level="info", proxy_headers=False)  # type: ignore[arg-type]
    finally:
        stop.set()
        scheduler.join(60)


def scheduler() -> None:
    """Run the scheduled jobs while this process holds the leader lease; stand by otherwise."""
    import signal

    from jobs.scheduler import run_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sh = shell()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_scheduler(sh.engine(), sh.settings, sh.policy, stop=stop)


def runs(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20, as_json: AsJson = False
) -> None:
    """The latest job runs, newest first."""
    from rich.table import Table

    from rewards.services.runs import recent_runs

    found = recent_runs(shell().engine(), limit)
    if as_json:
        print_json([plain(run) for run in found])
        return
    headers = (
        "id",
        "job",
        "trigger",
        "started",
        "status",
        "pages",
        "records",
        "quarantined",
        "computed on",
        "error",
    )
    rows = [
        (
            str(run.id),
            run.job_id,
            run.trigger,
            f"{run.started_at:%F %T}",
            run.status,
            str(run.pages),
            str(run.records_pulled),
            str(run.records_quarantined),
            run.computed_on or "",
            run.error or "",
        )
        for run in found
    ]
    if not out.is_terminal:  # scripts and logs get one tab-separated line per run
        for row in (headers, *rows):
            typer.echo("\t".join(row))
        return
    table = Table(*headers)
    for row in rows:
        table.add_row(*row[:-1], row[-1][:80])
    out.print(table)
