"""`--json` on every list and show command: one JSON document on stdout, the records the
services hold, times in UTC ending in Z, amounts as exact strings with their tokens beside."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from rewards.db.engine import make_engine
from rewards.services.audit_log import verify_audit_log
from rewards.services.incidents import list_incidents
from rewards.services.runs import recent_runs
from rewards.services.snapshots import compare, list_snapshots, settlement
from rewards.settings import REPO_ROOT
from tests.cli.conftest import cli_env
from tests.cli.test_snapshot_cli import ok
from tests.processes import cli
from tests.seeded import ingested_copy

# Beyond 2^53 per epoch: a JSON number read as a double would lose the last digits.
POOL = 123_456_789_012_345_678
SEASON = "ignition-s2"
BY = ("--by", "admin.example.org")
pytestmark = pytest.mark.xdist_group("cli-json")  # `built` once per dialect, not per worker
PROGRESS_LINE = re.compile(r"\w+: \d+ of \d+ [\w ]+, \d+ s elapsed, about \d+ s left")


def json_of(*args: str, env: dict[str, str]) -> Any:
    """The command's stdout, which must be one JSON document and nothing else."""
    return json.loads(ok(*args, "--json", env=env))


def assert_matches(document: dict[str, Any], record: object, amounts: tuple[str, ...] = ()) -> None:
    """`document` holds every field of `record` (but the snapshot's policy): times as UTC
    text ending in Z, `amounts` as exact strings, the rest as they are."""
    for field in fields(record):  # type: ignore[arg-type]
        value = getattr(record, field.name)
        if field.name == "policy":
            assert field.name not in document
        elif isinstance(value, datetime):
            shown = document[field.name]
            assert shown.endswith("Z") and datetime.fromisoformat(shown) == value, field.name
        elif field.name in amounts:
            assert document[field.name] == str(value), field.name
        elif field.name != "scope":  # an incident's scope is parsed: checked by the caller
            assert document[field.name] == value, field.name


def tokens(units: int) -> str:
    """Base units of a season with token_decimals = 6 as a decimal string."""
    return f"{Decimal(units).scaleb(-6):f}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def built(request, databases, seeded, small_fleet, tmp_path_factory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The ingested fleet with the production season's pool raised beyond 2^53 base units
    an epoch, and two published snapshots: v1 without the forced-upgrade incident, v2 with
    it; made once a module per dialect (each test gets a copy: `big_pool`)."""
    env = cli_env(ingested_copy(databases, seeded, request.param, small_fleet))
    seasons = tmp_path_factory.mktemp("seasons")
    production = (REPO_ROOT / "config" / "seasons" / f"{SEASON}.toml").read_text()
    big = re.sub(r"(?m)^pool_per_epoch = .*$", f"pool_per_epoch = {POOL}", production)
    (seasons / f"{SEASON}.toml").write_text(big)
    env = {**env, "REWARDS_SEASONS_DIR": str(seasons)}
    run = ("snapshot", "run", "--epochs", "0:6", *BY)
    first = cli(*run, "--reason", "first look", env=env)
    assert first.returncode == 0, first.stderr
    assert PROGRESS_LINE.search(first.stderr), first.stderr  # progress with time and ETA
    window = ("--start", "2024-04-25T08:05:00Z", "--end", "2024-04-25T09:05:00Z")
    scope = ("--scope", '{"agent_version_below": "0.10"}', "--deadline", "48h")
    ok("incidents", "declare", "apr-25", *window, *scope, "--reason", "forced upgrade", *BY,
       env=env)  # fmt: skip
    ok(*run, "--reason", "incident confirmed", env=env)
    ok("snapshot", "publish", "v1", *BY, env=env)
    ok("snapshot", "publish", "v2", *BY, env=env)
    return env


@pytest.fixture
def big_pool(built: dict[str, str], databases) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """`built` on a database of this test's own (a test may decide an incident)."""
    return {**built, "REWARDS_DATABASE_URL": databases.copy(built["REWARDS_DATABASE_URL"])}


@pytest.fixture
def stored(big_pool: dict[str, str]) -> Iterator[Engine]:
    """The database the commands read, for the services to say what they should print."""
    engine = make_engine(big_pool["REWARDS_DATABASE_URL"])
    yield engine
    engine.dispose()


def test_snapshot_list_and_show_print_the_stored_snapshots_with_exact_amounts(
    big_pool: dict[str, str], stored: Engine
) -> None:
    listed = json_of("snapshot", "list", env=big_pool)
    assert [s["snapshot"] for s in listed] == ["ignition-s2-v2", "ignition-s2-v1"]
    totals = ("total_pool", "total_paid", "total_unassigned")
    for document, record in zip(listed, list_snapshots(stored, None), strict=True):
        assert_matches(document, record, totals)
        for name in totals:
            assert document[f"{name}_decimal"] == tokens(getattr(record, name))
    shown = json_of("snapshot", "show", "v2", env=big_pool)
    assert shown == listed[0]
    assert shown["total_pool"] == str(7 * POOL)  # exact, where a double is off
    assert int(float(shown["total_pool"])) != 7 * POOL
    assert shown["total_pool_decimal"] == "864197523086.419746"
    assert shown["status"] == "published" and shown["published_at"].endswith("Z")


def test_snapshot_diff_and_adjustments_print_what_the_services_compute(
    big_pool: dict[str, str], stored: Engine, tmp_path: Path
) -> None:
    diff = cli("snapshot", "diff", "v1", "v2", "--json", "--out", str(tmp_path / "d"),
                   env=big_pool)  # fmt: skip
    assert diff.returncode == 0, diff.stderr
    assert "wrote the full diff" in diff.stderr  # notes go to stderr, stdout is the document
    document = json.loads(diff.stdout)
    summary = compare(stored, "v1", "v2", SEASON).summary
    assert document["before"] == "ignition-s2-v1" and document["after"] == "ignition-s2-v2"
    assert document["device_epochs_regained"] == summary.device_epochs_regained > 0
    assert document["suppliers_changed"] == summary.suppliers_changed
    assert document["moved"] == str(summary.moved)
    assert document["moved_decimal"] == tokens(summary.moved)
    assert [(c["owner_id"], c["before"], c["after"], c["delta"]) for c in document["largest"]] == [
        (owner, str(before), str(after), str(delta))
        for owner, before, after, delta in summary.largest
    ]
    assert document["largest"][0]["delta_decimal"] == tokens(summary.largest[0][3])

    adjusted = cli("snapshot", "adjustments", "v1", "v2", "--json", "--out",
                       str(tmp_path / "a"), env=big_pool)  # fmt: skip
    assert adjusted.returncode == 0, adjusted.stderr
    assert "are owed" in adjusted.stderr
    rows = json.loads(adjusted.stdout)
    table = settlement(stored, "v1", "v2", SEASON)
    assert [row["owner_id"] for row in rows] == table["owner_id"].to_list()
    for row, (_, paid, due, adjustment, direction) in zip(rows, table.iter_rows(), strict=True):
        assert (row["paid"], row["due"], row["adjustment"]) == (
            str(paid),
            str(due),
            str(adjustment),
        )
        assert row["adjustment_decimal"] == tokens(adjustment) and row["direction"] == direction
    csv_header = (tmp_path / "a" / "adjustments.csv").read_text().splitlines()[0]
    assert list(rows[0]) == csv_header.split(",")  # the same columns as the finance file


def test_runs_incidents_and_the_audit_log_print_the_stored_records(
    big_pool: dict[str, str], stored: Engine
) -> None:
    runs = json_of("runs", env=big_pool)
    recorded = recent_runs(stored, 20)
    assert [r["id"] for r in runs] == [r.id for r in recorded]
    assert "snapshot:ignition-s2" in {r["job_id"] for r in runs}
    for document, run in zip(runs, recorded, strict=True):
        assert_matches(document, run)

    incidents = json_of("incidents", "list", env=big_pool)
    (incident,) = list_incidents(stored)
    assert len(incidents) == 1
    assert_matches(incidents[0], incident)
    assert incidents[0]["scope"] == {"agent_version_below": "0.10"}
    assert json_of("incidents", "show", "apr-25", env=big_pool) == incidents[0]
    assert json_of("incidents", "list", "--status", "dismissed", env=big_pool) == []
    missing = cli("incidents", "show", "nope", "--json", env=big_pool)
    assert missing.returncode == 2 and "no incident 'nope'" in missing.stderr
    assert missing.stdout == ""

    report = verify_audit_log(stored)
    assert json_of("audit", "verify", env=big_pool) == {
        "intact": True,
        "entries": report.entries,
        "problems": [],
    }
    assert report.entries > 0


@pytest.mark.parametrize("built", ["sqlite"], indirect=True)  # the human output: one is enough
def test_incidents_show_prints_one_incident_field_by_field(big_pool: dict[str, str]) -> None:
    shown = ok("incidents", "show", "apr-25", env=big_pool).splitlines()
    assert shown[0].split() == ["incident:", "apr-25"]
    assert "window:            2024-04-25T08:05:00Z to 2024-04-25T09:05:00Z" in shown
    assert "recovery deadline: 172800s after the end" in shown


def test_incidents_impact_previews_what_unconfirm_would_change_then_unconfirm_does_it(
    big_pool: dict[str, str],
) -> None:
    """v2 counts apr-25; un-confirming it would take back exactly what v1 to v2 gave."""
    seen = json_of("incidents", "impact", "apr-25", "--change", "unconfirm", env=big_pool)
    engine = make_engine(big_pool["REWARDS_DATABASE_URL"])
    try:
        gave = compare(engine, "v1", "v2", SEASON).summary
    finally:
        engine.dispose()
    assert seen["device_epochs_lost"] == gave.device_epochs_regained > 0
    assert seen["moved"] == str(gave.moved) and seen["moved_decimal"] == tokens(gave.moved)
    assert sum(d["lost"] for d in seen["per_day"]) == seen["device_epochs_lost"]
    assert json_of("incidents", "show", "apr-25", env=big_pool)["status"] == "confirmed"
    ok("incidents", "unconfirm", "apr-25", *BY, env=big_pool)
    assert json_of("incidents", "show", "apr-25", env=big_pool)["status"] == "proposed"
    refused = cli("incidents", "impact", "nope", env=big_pool)
    assert refused.returncode != 0 and "no incident 'nope'" in refused.stderr
