"""`rewards db`: database migrations.

The migration service (and alembic with it) is imported inside each command, so that
`rewards --help` starts fast."""

from __future__ import annotations

import typer

from rewards.cli._shell import out, shell

db_app = typer.Typer(no_args_is_help=True, help="Database migrations.")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the database up to REVISION (default: the latest)."""
    from rewards.services.database import upgrade

    settings = shell().settings
    upgrade(settings.sqlalchemy_url, revision)
    out.print(f"database at {revision}: {settings.database_url}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    from rewards.services.database import downgrade

    downgrade(shell().settings.sqlalchemy_url, revision)
    out.print(f"database at {revision}")
