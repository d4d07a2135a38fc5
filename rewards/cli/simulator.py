"""`rewards sim`: serve the simulated uptime API over HTTP, or dump what it delivers.

uvicorn and the simulator are imported inside each command, so that `rewards --help` starts
fast."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rewards.cli._shell import err, fail, out, shell

if TYPE_CHECKING:
    from rewards.sim.fleet import FleetSpec

sim_app = typer.Typer(no_args_is_help=True, help="The uptime API simulator.")


def _spec(
    seed: int, devices: int, days: int, scenario: str, period: int, bad_rate: float = 0.0
) -> FleetSpec:
    from rewards.sim.fleet import FleetSpec

    try:
        return FleetSpec(
            seed=seed,
            devices=devices,
            days=days,
            scenario=scenario,
            heartbeat_period_s=period,
            bad_record_rate=bad_rate,
        )
    except ValueError as exc:
        fail(str(exc))


def _moment(value: str, name: str) -> datetime:
    from rewards.uptime.records import parse_time

    parsed = parse_time(name, value)
    if isinstance(parsed, str):
        fail(f"--{name}: {parsed.removeprefix(f'field {name!r} ')}")
    return parsed


Seed = Annotated[int, typer.Option(help="Random seed; equal arguments give equal fleets.")]
Devices = Annotated[int, typer.Option(min=1, help="Number of devices.")]
Days = Annotated[int, typer.Option(min=1, help="Simulated days from 2024-04-20T00:00Z.")]
Scenario = Annotated[str, typer.Option(help="steady or april-2024.")]
Period = Annotated[int, typer.Option(min=1, help="Heartbeat period in seconds.")]
BadRate = Annotated[float, typer.Option(min=0, max=1, help="Share of malformed records.")]


def _return_freed_memory() -> None:
    """Give freed window arrays back to the system at once.

    Every window makes and frees arrays of a few MB. glibc raises its mmap threshold after
    the first such frees and then keeps their pages in its heap: at 600,000 devices that
    held about 300 MB more than the live data. A fixed 1 MB threshold (M_MMAP_THRESHOLD)
    keeps resident memory near what is live. Elsewhere than glibc, nothing to do."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return


@sim_app.command("serve")
def sim_serve(
    seed: Seed = 1,
    devices: Devices = 200,
    days: Days = 7,
    scenario: Scenario = "april-2024",
    period: Period = 60,
    bad_rate: BadRate = 0.0,
    host: str = "127.0.0.1",
    port: int = 8600,
    token: Annotated[
        str | None,
        typer.Option(help="Service token to require (default: REWARDS_UPTIME_API_TOKEN)."),
    ] = None,
    error_rate: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    throttle_rate: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    retry_after: Annotated[int, typer.Option(min=0)] = 1,
    slow_rate: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    truncate_rate: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    fault_seed: int = 0,
) -> None:
    """Serve a simulated uptime API over HTTP until interrupted."""
    import uvicorn

    from rewards.sim.server import Faults, UptimeSimulator, create_sim_app

    secret = token or shell().settings.uptime_api_token.get_secret_value()
    if not secret:
        fail("the simulator needs a service token: --token or REWARDS_UPTIME_API_TOKEN")
    faults = Faults(
        error_rate=error_rate,
        throttle_rate=throttle_rate,
        retry_after_s=retry_after,
        slow_rate=slow_rate,
        truncate_rate=truncate_rate,
        seed=fault_seed,
    )
    spec = _spec(seed, devices, days, scenario, period, bad_rate)
    _return_freed_memory()
    err.print(f"simulating {devices} devices over {days} days ({scenario}) ...")
    simulator = UptimeSimulator(spec, token=secret, faults=faults)
    feed = simulator.feed
    err.print(
        f"serving heartbeats in {feed.windows:,} windows of {feed.window_us // 60_000_000} "
        f"min, made on demand, and {simulator.devices.height:,} device records "
        f"on http://{host}:{port}"
    )
    uvicorn.run(
        create_sim_app(simulator), host=host, port=port, log_level="warning", access_log=False
    )


@sim_app.command("dump")
def sim_dump(
    out_file: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    seed: Seed = 1,
    devices: Devices = 200,
    days: Days = 7,
    scenario: Scenario = "april-2024",
    period: Period = 60,
    bad_rate: BadRate = 0.0,
    since: Annotated[
        str | None,
        typer.Option("--from", help="RFC 3339: observed at or after; default: season start."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--to", help="RFC 3339: observed before; default: season end."),
    ] = None,
) -> None:
    """Write the heartbeats `sim serve` with the same arguments delivers, deduplicated
    (rule 4.1): those observed in [--from, --to), or the whole season."""
    from rewards.core import to_us
    from rewards.services.files import write_parquet
    from rewards.sim.fleet import fleet_feed

    if out_file.suffix != ".parquet":
        fail(f"--out {out_file}: expected a .parquet file")
    spec = _spec(seed, devices, days, scenario, period, bad_rate)
    low = to_us(_moment(since, "from")) if since else spec.start_us
    high = to_us(_moment(until, "to")) if until else spec.end_us
    if high <= low:
        fail("--to must be after --from")
    truth = fleet_feed(spec).truth(low, high)
    write_parquet(truth, out_file)
    out.print(f"wrote {truth.height:,} heartbeats to {out_file}")
