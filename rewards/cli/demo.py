"""`rewards demo`: the April 2024 story end to end on an embedded SQLite database.
A top-level command, registered on the root app in rewards/cli/__init__.py.

The demo, uvicorn and the web pages are imported inside the command, so that
`rewards --help` starts fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rewards.cli._shell import fail, out
from rewards.cli.simulator import Devices
from rewards.core import PolicyError
from rewards.settings import get_settings


def demo(
    devices: Devices = 2_000,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path(
        "var/demo"
    ),
    serve: Annotated[
        bool,
        typer.Option(help="Then serve the web pages on the demo database until Ctrl-C."),
    ] = False,
) -> None:
    """The April 2024 story on the embedded SQLite default: simulate, ingest over HTTP,
    snapshot, detect and confirm the incident, rerun, diff, publish, export, prove; and
    where its web pages open."""
    from rewards.demo import PAGES_PORT, run_demo
    from rewards.seasons import load_policy
    from rewards.settings import REPO_ROOT

    try:
        policy = load_policy(REPO_ROOT / "config" / "seasons" / "april-2024-demo.toml")
    except PolicyError as exc:
        fail(str(exc))
    run_demo(
        policy,
        devices=devices,
        days=policy.epoch_count,
        workdir=workdir.resolve(),
        console=out,
    )
    if serve:
        import uvicorn

        from rewards.api.verifier import make_verifier
        from rewards.services.database import open_database
        from rewards.web.app import create_site

        settings = get_settings(
            database_url=f"sqlite:///{workdir.resolve() / 'rewards.db'}",
            season=policy.season_id,
            dev_issuer_enabled=True,
            public_url=f"http://127.0.0.1:{PAGES_PORT}",
        )
        out.print(f"serving the pages on http://127.0.0.1:{PAGES_PORT}/app (Ctrl-C stops)")
        site = create_site(
            open_database(settings.database_url, serving=True), settings, make_verifier(settings)
        )
        uvicorn.run(
            site, host="127.0.0.1", port=PAGES_PORT, log_level="warning", proxy_headers=False
        )
