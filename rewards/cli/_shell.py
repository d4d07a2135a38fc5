"""What every command shares: the two consoles, `fail`, the `Shell` of settings and season
policy, the clock, the `--by` actor option, and how `--json` writes records.

The database and season services are imported inside the helpers that use them, so that
`rewards --help` starts without loading them."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import polars as pl
import typer
from rich.console import Console

from rewards.core import PolicyError, SeasonPolicy, reward_decimal
from rewards.settings import SCHEDULER, Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from sqlalchemy import Engine

    from rewards.services.computing import ComputePlan

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@dataclass
class Shell:
    settings: Settings
    policy: SeasonPolicy

    def engine(self, *, serving: bool = False) -> Engine:
        """The configured database, reachable and migrated, or a message and exit."""
        from rewards.services.database import DatabaseNotReady, open_database

        try:
            return open_database(self.settings.sqlalchemy_url, serving=serving)
        except DatabaseNotReady as exc:
            fail(str(exc))

    def key(self) -> bytes:
        """The publication key (made on first use), or a message and exit."""
        from rewards.services.publication_key import KeyProblem, publication_key

        try:
            return publication_key(self.settings.publication_key_path)
        except KeyProblem as exc:
            fail(str(exc))

    def plan(self, *, workers: int | None = None, scheduler: str | None = None) -> ComputePlan:
        """How a run computes its shards: `--scheduler`, else `--workers` local processes,
        else the settings (compute_scheduler, then compute_workers)."""
        from rewards.services.computing import ComputePlan, plan_of

        configured = plan_of(self.settings)
        if scheduler is None and workers is None:
            return configured
        return ComputePlan(configured.shard_devices, workers or 0, scheduler, configured.work_dir)


def _scheduler(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(SCHEDULER, value):
        raise typer.BadParameter(f"{value!r}: expected a Dask scheduler as tcp://host:port")
    return value


SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        callback=_scheduler,
        help="Run the device shards on this Dask scheduler (tcp://host:port; default: the "
        "compute_scheduler setting). Same results, byte for byte.",
    ),
]


def shell() -> Shell:
    from rewards.seasons import load_policy

    try:
        settings = get_settings()
        return Shell(settings, load_policy(settings.season_file))
    except (SettingsError, PolicyError) as exc:
        fail(str(exc))


def utc_now() -> datetime:
    return datetime.now(UTC)


def _season_shell(season: str | None) -> Shell:
    from rewards.seasons import load_policy

    sh = shell()
    if season is None or season == sh.policy.season_id:
        return sh
    path = sh.settings.season_file.with_name(f"{season}.toml")
    try:
        return Shell(sh.settings, load_policy(path))
    except PolicyError as exc:
        fail(str(exc))


def _actor(value: str) -> str:
    """An actor is an identifier (DESIGN 10), so two look-alike names are never two people."""
    from rewards.core import identifier_problem

    if problem := identifier_problem(value):
        fail(f"--by {value!r}: an actor {problem}")
    return value


Actor = Annotated[
    str,
    typer.Option("--by", callback=_actor, help="Who is deciding (recorded in the audit log)."),
]


AsJson = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document on stdout instead: snake_case keys, times in UTC "
        "ending in Z, amounts in base units as strings with NAME_decimal in tokens.",
    ),
]


def utc_text(moment: datetime) -> str:
    """A time as `--json` writes it: ISO 8601 in UTC, ending in Z."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def plain(record: DataclassInstance, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """A service record as a JSON object: its field names, times as `utc_text`."""
    return {
        key: utc_text(value) if isinstance(value, datetime) else value
        for key, value in asdict(record).items()
        if key not in leave_out
    }


def with_amounts(
    frame: pl.DataFrame, decimals: int, amounts: Sequence[str]
) -> list[dict[str, Any]]:
    """The rows of `frame` as JSON objects, each of its `amounts` columns in base units as a
    string (a JSON number loses digits beyond 2^53 in most readers) and, beside it as
    NAME_decimal, in tokens (`reward_decimal`, as the exports write them)."""
    return (
        frame.with_columns(
            reward_decimal(name, decimals).alias(f"{name}_decimal") for name in amounts
        )
        .with_columns(pl.col(amounts).cast(pl.String))
        .to_dicts()
    )


def amounts(decimals: int, **units: int) -> dict[str, Any]:
    """Named amounts in base units as one JSON object, each as `with_amounts` writes it."""
    frame = pl.DataFrame({name: [value] for name, value in units.items()})
    return with_amounts(frame.cast(pl.Int64), decimals, list(units))[0]


def print_json(document: object) -> None:
    """`document` as the one thing on stdout."""
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
