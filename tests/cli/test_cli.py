"""The command line: bad input and bad settings are messages that name the problem."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from rewards.sim.fleet import FleetSpec, delivered_heartbeats, delivery_log
from tests.processes import cli, cli_env, rewards


def env_for(tmp_path: Path, season_dir: Path, **extra: str) -> dict[str, str]:
    return cli_env(f"sqlite:///{tmp_path / 'cli.db'}", "http://127.0.0.1:9", season_dir, **extra)


def test_a_bad_setting_fails_at_start_naming_the_setting(tmp_path: Path, season_dir: Path) -> None:
    done = cli("ingest", "--once", env=env_for(tmp_path, season_dir, REWARDS_PAGE_SIZE="lots"))
    assert done.returncode == 2
    assert "page_size (REWARDS_PAGE_SIZE" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_database_scheme_is_refused(tmp_path: Path, season_dir: Path) -> None:
    done = cli(
        "ingest", "--once", env=env_for(tmp_path, season_dir, REWARDS_DATABASE_URL="mysql://x/y")
    )
    assert done.returncode == 2 and "database_url" in done.stderr


def test_a_missing_season_file_is_named(tmp_path: Path, season_dir: Path) -> None:
    done = cli("ingest", "--once", env=env_for(tmp_path, season_dir, REWARDS_SEASON="nope"))
    assert done.returncode == 2 and "nope.toml: season file not found" in done.stderr


def test_ingest_into_an_unmigrated_database_says_what_to_run(
    tmp_path: Path, season_dir: Path
) -> None:
    done = cli("ingest", "--once", env=env_for(tmp_path, season_dir))
    assert done.returncode == 2 and "rewards db upgrade" in done.stderr


def test_an_unreachable_uptime_api_ends_the_run_with_a_reason_and_a_recorded_failure(
    tmp_path: Path, season_dir: Path
) -> None:
    env = env_for(tmp_path, season_dir, REWARDS_MAX_ATTEMPTS="2", REWARDS_BACKOFF_BASE_S="0")
    assert cli("db", "upgrade", env=env).returncode == 0
    done = cli("ingest", "--once", "--stream", "heartbeats", env=env)
    assert done.returncode == 1 and "network error" in done.stderr
    assert "Traceback" not in done.stderr
    runs = cli("runs", env=env)
    assert "ingest-heartbeats" in runs.stdout and "failed" in runs.stdout


def test_sim_dump_writes_the_deduplicated_delivered_heartbeats(
    tmp_path: Path, season_dir: Path
) -> None:
    out = tmp_path / "dump.parquet"
    done = cli(
        "sim",
        "dump",
        "--devices",
        "5",
        "--days",
        "1",
        "--seed",
        "9",
        "--out",
        str(out),
        env=env_for(tmp_path, season_dir),
    )
    assert done.returncode == 0, done.stderr
    expected = delivered_heartbeats(delivery_log(FleetSpec(seed=9, devices=5, days=1)))
    assert pl.read_parquet(out).equals(expected)
    wrong = cli(
        "sim", "dump", "--out", str(tmp_path / "dump.csv"), env=env_for(tmp_path, season_dir)
    )
    assert wrong.returncode == 2 and "expected a .parquet file" in wrong.stderr
    assert not (tmp_path / "dump.csv").exists()


def test_incident_commands_declare_list_and_refuse_bad_input(
    tmp_path: Path, season_dir: Path
) -> None:
    env = env_for(tmp_path, season_dir)
    assert cli("db", "upgrade", env=env).returncode == 0
    bad = cli(
        "incidents",
        "declare",
        "x",
        "--start",
        "2024-04-25T08:05:00Z",
        "--end",
        "2024-04-25T09:05:00Z",
        "--by",
        "admin",
        "--deadline",
        "48h",
        "--scope",
        '{"agent_version_below": "one"}',
        env=env,
    )
    assert bad.returncode == 2 and "not dotted numbers" in bad.stderr
    naive = cli(
        "incidents",
        "declare",
        "x",
        "--start",
        "2024-04-25T08:05:00",
        "--end",
        "2024-04-25T09:05:00Z",
        "--by",
        "admin",
        "--deadline",
        "48h",
        env=env,
    )
    assert naive.returncode == 2 and "no UTC offset" in naive.stderr
    # a recovery deadline is said, never 0 s by default (issue 17): no incident without it
    silent = cli(
        "incidents", "declare", "x", "--start", "2024-04-25T08:05:00Z",
        "--end", "2024-04-25T09:05:00Z", "--by", "admin", env=env,
    )  # fmt: skip
    assert silent.returncode == 2 and "--deadline" in silent.stderr
    assert cli("incidents", "list", env=env).stdout == ""
    done = cli(
        "incidents",
        "declare",
        "apr-25",
        "--start",
        "2024-04-25T08:05:00Z",
        "--end",
        "2024-04-25T09:05:00Z",
        "--deadline",
        "48h",
        "--by",
        "admin",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    listed = cli("incidents", "list", "--status", "confirmed", env=env)
    assert listed.stdout.startswith("apr-25\tconfirmed\t2024-04-25T08:05:00Z")
    unknown = cli("incidents", "list", "--status", "foo", env=env)
    words = " ".join(unknown.stderr.replace("│", " ").split())  # typer boxes its messages
    assert unknown.returncode == 2 and "'foo': expected one of proposed, confirmed" in words
    edited = cli("incidents", "edit", "apr-25", "--deadline", "12h", "--by", "bob", env=env)
    assert edited.returncode == 0, edited.stderr
    listed = cli("incidents", "list", env=env)
    assert "\tconfirmed\t" in listed.stdout and "\t43200s\t" in listed.stdout
    backwards = cli(
        "incidents", "edit", "apr-25", "--end", "2024-04-25T08:00:00Z", "--by", "bob", env=env
    )
    assert backwards.returncode == 2 and "end must be after start" in backwards.stderr
    missing = cli("incidents", "confirm", "nope", "--by", "admin", env=env)
    assert missing.returncode == 2 and "no incident 'nope'" in missing.stderr


def test_incidents_declare_and_edit_keep_windows_inside_the_configured_year_window(
    tmp_path: Path, season_dir: Path
) -> None:
    env = env_for(
        tmp_path, season_dir, REWARDS_TIMESTAMP_MIN_YEAR="2020", REWARDS_TIMESTAMP_MAX_YEAR="2030"
    )
    assert cli("db", "upgrade", env=env).returncode == 0
    window = ["--start", "2024-04-25T08:05:00Z", "--end", "2024-04-25T09:05:00Z"]
    done = cli(
        "incidents", "declare", "apr-25", *window, "--by", "admin", "--deadline", "1h", env=env
    )
    assert done.returncode == 0, done.stderr
    late = cli("incidents", "declare", "late", "--start", "2024-04-25T08:05:00Z",
                   "--end", "2031-06-01T00:00:00Z", "--by", "admin", "--deadline", "1h",
                   env=env)  # fmt: skip
    assert late.returncode == 2 and "2020 to 2030" in late.stderr
    for option, value in (("--end", "2031-06-01T00:00:00Z"), ("--start", "2019-12-31T23:00:00Z")):
        edited = cli("incidents", "edit", "apr-25", option, value, "--by", "bob", env=env)
        assert edited.returncode == 2, edited.stdout
        assert "2020 to 2030" in edited.stderr and "Traceback" not in edited.stderr
    listed = cli("incidents", "list", env=env)
    assert "\t2024-04-25T08:05:00Z\t2024-04-25T09:05:00Z\t" in listed.stdout  # unchanged


def test_a_command_on_a_database_that_is_not_there_says_so_and_makes_none(
    tmp_path: Path, season_dir: Path
) -> None:
    """Issue 17: reading the default database used to leave an empty var/rewards.db."""
    env = env_for(tmp_path, season_dir)
    for command in (("runs",), ("incidents", "list"), ("snapshot", "list")):
        done = cli(*command, env=env)
        assert done.returncode == 2, command
        assert f"there is no database at {tmp_path / 'cli.db'}" in done.stderr
        assert "rewards db upgrade" in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "cli.db").exists(), command
    assert cli("db", "upgrade", env=env).returncode == 0  # what the message says to do
    assert cli("runs", env=env).returncode == 0


WINDOW = ("--start", "2024-04-25T08:05:00Z", "--end", "2024-04-25T09:05:00Z")


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),  # typer's own output
        ("snapshot", "run", "--by", "a"),  # a usage error: --reason is missing
        ("incidents", "list", "--status", "foo"),  # a bad value
        ("snapshot", "show", "v9"),  # a service's refusal, answered by `main`
        ("incidents", "declare", "apr-25", *WINDOW, "--by", "admin", "--deadline", "1h"),
    ],
)
def test_the_commands_run_in_this_process_answer_as_the_real_command_does(
    args: tuple[str, ...], tmp_path: Path, season_dir: Path
) -> None:
    """Most command-line tests run `rewards` in the test's process (`cli`): same streams,
    same exit code, same files as a `rewards` process, each on a database of its own."""
    answers = []
    for run, folder in ((rewards, tmp_path / "process"), (cli, tmp_path / "here")):
        folder.mkdir()
        env = env_for(folder, season_dir)
        assert cli("db", "upgrade", env=env).returncode == 0
        done = run(*args, env=env)
        answers.append((done.returncode, done.stdout, done.stderr))
    assert answers[0] == answers[1]
