"""Computing eligibility from files: every format agrees; bad files name file, row, column."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from rewards.core.times import YearWindow
from rewards.inputs import InputError, read_devices, read_heartbeats, read_incidents
from rewards.settings import REPO_ROOT
from rewards.sim.fleet import FleetSpec, delivered_heartbeats, delivery_log
from tests.processes import cli, cli_env

SEASON = REPO_ROOT / "config" / "seasons" / "ignition-s2.toml"
APRIL = {
    "id": "apr-25",
    "start": "2024-04-25T08:05:00Z",
    "end": "2024-04-25T09:05:00Z",
    "recovery_deadline": "48h",
    "scope": {"agent_version_below": "0.10"},
}


@pytest.fixture(scope="module")
def truth() -> pl.DataFrame:
    return delivered_heartbeats(delivery_log(FleetSpec(seed=4, devices=12, days=7)))


def write_all_formats(truth: pl.DataFrame, folder: Path) -> list[Path]:
    text = truth.with_columns(pl.col("observed_at").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"))
    truth.write_parquet(folder / "hb.parquet")
    text.write_csv(folder / "hb.csv")
    text.write_ndjson(folder / "hb.ndjson")
    return [folder / "hb.parquet", folder / "hb.csv", folder / "hb.ndjson"]


def test_parquet_csv_and_ndjson_heartbeats_give_identical_results(
    truth: pl.DataFrame, tmp_path: Path
) -> None:
    (tmp_path / "inc.json").write_text(json.dumps([APRIL]))
    outputs = []
    for source in write_all_formats(truth, tmp_path):
        assert read_heartbeats(source).equals(truth.select(list(truth.columns)))
        out = tmp_path / f"{source.suffix[1:]}-out.parquet"
        done = cli(
            "eligibility",
            "compute",
            "--season",
            str(SEASON),
            "--heartbeats",
            str(source),
            "--incidents",
            str(tmp_path / "inc.json"),
            "--out",
            str(out),
            env=cli_env("sqlite:///unused", "http://127.0.0.1:9", tmp_path),
        )
        assert done.returncode == 0, done.stderr
        assert "no eligible device: nothing paid" in done.stderr  # the season runs to May 20
        outputs.append(pl.read_parquet(out))
    assert outputs[0].equals(outputs[1]) and outputs[0].equals(outputs[2])
    assert outputs[0].columns == [
        "device_id",
        "epoch",
        "epoch_start",
        "online_s",
        "bridged_s",
        "credited_s",
        "uptime_ratio",
        "eligible",
        "reason",
        "reward",
        "bridges_used",
        "bridges_denied",
        "shortfall_s",
    ]
    assert outputs[0].height == 12 * 30
    assert outputs[0].filter(pl.col("epoch") == 5)["credited_s"].sum() > 0


def csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("device_id,observed_at,boot_id\n", "missing column 'agent_version'"),
        (
            "device_id,observed_at,boot_id,agent_version\n"
            "a,2024-04-25T08:00:00Z,b,1\n"
            "a,2024-04-25T08:01:00Z,b,1\n"
            "a,2024-04-25 08:02,b,1\n",
            "row 3, column 'observed_at'",
        ),
        (
            "device_id,observed_at,boot_id,agent_version\na,2024-04-25T08:00:00,b,1\n",
            "row 1, column 'observed_at'",
        ),
        (
            "device_id,observed_at,boot_id,agent_version\n,2024-04-25T08:00:00Z,b,1\n",
            "row 1, column 'device_id': empty value",
        ),
    ],
)
def test_a_bad_heartbeats_file_names_the_file_row_and_column(
    tmp_path: Path, content: str, message: str
) -> None:
    with pytest.raises(InputError, match=rf"bad\.csv: .*{message}"):
        read_heartbeats(csv(tmp_path, content))


@pytest.mark.parametrize(
    ("incident", "message"),
    [
        ({**APRIL, "scope": {"agent_version_below": "1.x"}}, "not dotted numbers"),
        ({**APRIL, "end": "2024-04-25T08:00:00Z"}, "'end' must be after 'start'"),
        ({**APRIL, "recovery_deadline": "-1h"}, "recovery_deadline"),
        ({**APRIL, "scope": {"all": True, "device_ids": ["a"]}}, "'scope' must be one of"),
        ({**APRIL, "start": "yesterday"}, "field 'start' must be an RFC 3339 time"),
        ({**APRIL, "owner": "x"}, "unknown field 'owner'"),
    ],
)
def test_a_bad_incident_is_refused_naming_it(
    tmp_path: Path, incident: dict[str, object], message: str
) -> None:
    path = tmp_path / "incidents.json"
    path.write_text(json.dumps([incident]))
    with pytest.raises(InputError, match=message):
        read_incidents(path)


def test_only_confirmed_incidents_count(tmp_path: Path) -> None:
    path = tmp_path / "incidents.json"
    path.write_text(
        json.dumps(
            [
                APRIL,
                {**APRIL, "id": "p", "status": "proposed"},
                {**APRIL, "id": "c", "status": "confirmed"},
            ]
        )
    )
    assert read_incidents(path).get_column("incident_id").to_list() == ["apr-25", "c"]


def test_devices_file_with_and_without_validity(tmp_path: Path) -> None:
    path = csv(tmp_path, "device_id,gpu_model,suspended\ngpu-1,A100,false\ngpu-2,,TRUE\n")
    devices = read_devices(path)
    assert devices.select("device_id", "gpu_model", "suspended").rows() == [
        ("gpu-1", "A100", False),
        ("gpu-2", None, True),
    ]
    bad = csv(tmp_path, "device_id,gpu_model,suspended\ngpu-1,A100,maybe\n")
    with pytest.raises(InputError, match="row 1, column 'suspended'"):
        read_devices(bad)


def test_nothing_is_written_when_an_input_is_bad(truth: pl.DataFrame, tmp_path: Path) -> None:
    (tmp_path / "inc.json").write_text("[{]")
    out = tmp_path / "out.csv"
    done = cli(
        "eligibility",
        "compute",
        "--season",
        str(SEASON),
        "--heartbeats",
        str(write_all_formats(truth, tmp_path)[0]),
        "--incidents",
        str(tmp_path / "inc.json"),
        "--out",
        str(out),
        env=cli_env("sqlite:///unused", "http://127.0.0.1:9", tmp_path),
    )
    assert done.returncode == 2 and "inc.json: not valid JSON" in done.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


HEADER = "device_id,observed_at,boot_id,agent_version\n"


@pytest.mark.parametrize(
    ("device_id", "problem"),
    [
        pytest.param(" gpu-1", "no spaces", id="padded"),
        pytest.param("gpu\u200d-1", "non-ASCII", id="zero-width-joiner"),
        pytest.param("gpu-1\u202e", "non-ASCII", id="right-to-left-override"),
        pytest.param("gpu-\u0430", "non-ASCII", id="cyrillic-a"),
        pytest.param("gpu-\u00e9", "non-ASCII", id="other-non-ascii"),
        pytest.param("g" * 129, "at most 128", id="too-long"),
    ],
)
def test_a_files_device_id_that_is_not_an_identifier_is_refused_naming_row_and_column(
    tmp_path: Path, device_id: str, problem: str
) -> None:
    beats = csv(
        tmp_path, f"{HEADER}gpu-1,2024-04-25T08:00:00Z,b,1\n{device_id},2024-04-25T08:01:00Z,b,1\n"
    )
    with pytest.raises(InputError, match=rf"row 2, column 'device_id': .*{problem}"):
        read_heartbeats(beats)
    devices = csv(tmp_path, f"device_id,gpu_model,suspended\n{device_id},A100,false\n")
    with pytest.raises(InputError, match=rf"row 1, column 'device_id': .*{problem}"):
        read_devices(devices)
    incidents = tmp_path / "incidents.json"
    incidents.write_text(json.dumps([{**APRIL, "scope": {"device_ids": ["gpu-1", device_id]}}]))
    with pytest.raises(InputError, match=rf"scope device_ids\[1\]: .*{problem}"):
        read_incidents(incidents)


def test_case_variants_in_a_file_stay_distinct_devices(tmp_path: Path) -> None:
    beats = csv(
        tmp_path, f"{HEADER}gpu-1,2024-04-25T08:00:00Z,b,1\nGPU-1,2024-04-25T08:00:00Z,b,1\n"
    )
    assert read_heartbeats(beats).get_column("device_id").to_list() == ["gpu-1", "GPU-1"]


@pytest.mark.parametrize(
    ("observed_at", "problem"),
    [
        ("2016-12-31T23:59:60Z", "leap second"),
        ("0000-01-01T00:00:00Z", "outside 2000..2100"),
        ("2101-01-01T00:00:00Z", "outside 2000..2100"),
    ],
)
def test_a_files_leap_second_or_year_outside_the_window_is_refused(
    tmp_path: Path, observed_at: str, problem: str
) -> None:
    beats = csv(tmp_path, f"{HEADER}gpu-1,{observed_at},b,1\n")
    with pytest.raises(InputError, match=rf"row 1, column 'observed_at': .*{problem}"):
        read_heartbeats(beats)


def test_a_parquet_timestamp_outside_the_window_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hb.parquet"
    pl.DataFrame(
        {
            "device_id": ["gpu-1"],
            "observed_at": [datetime(1970, 1, 1, tzinfo=UTC)],
            "boot_id": ["b"],
            "agent_version": ["1"],
        }
    ).write_parquet(path)
    with pytest.raises(InputError, match=r"row 1, column 'observed_at': .*outside 2000..2100"):
        read_heartbeats(path)


@pytest.mark.parametrize(
    ("start", "problem"),
    [
        pytest.param("9999-04-25T08:05:00Z", "year 9999 is outside 2000..2100", id="year-9999"),
        pytest.param("1999-12-31T23:00:00Z", "year 1999 is outside 2000..2100", id="year-1999"),
        pytest.param("2016-12-31T23:59:60Z", "leap second", id="leap-second"),
    ],
)
def test_an_incident_file_time_outside_the_year_window_or_on_a_leap_second_is_refused(
    tmp_path: Path, start: str, problem: str
) -> None:
    path = tmp_path / "incidents.json"
    path.write_text(json.dumps([{**APRIL, "start": start, "end": "9999-12-31T00:00:00Z"}]))
    with pytest.raises(InputError, match=rf"incident 'apr-25': field 'start' .*{problem}"):
        read_incidents(path)


def test_the_year_window_of_an_incident_file_is_a_parameter(tmp_path: Path) -> None:
    path = tmp_path / "incidents.json"
    old = {**APRIL, "start": "1995-04-25T08:05:00Z", "end": "1995-04-25T09:05:00Z"}
    path.write_text(json.dumps([old]))
    read = read_incidents(path, years=YearWindow(1990, 2030))
    assert read.get_column("incident_id").to_list() == ["apr-25"]
    with pytest.raises(InputError, match=r"field 'end' .*year 2024 is outside 2025..2030"):
        path.write_text(json.dumps([{**APRIL, "start": "2025-01-01T00:00:00Z"}]))
        read_incidents(path, years=YearWindow(2025, 2030))


@pytest.mark.parametrize(
    ("window", "outside", "problem"),
    [
        pytest.param(("2025", "2030"), "heartbeats", "outside 2025..2030", id="heartbeats"),
        pytest.param(("2020", "2023"), "heartbeats", "outside 2020..2023", id="heartbeats-after"),
        pytest.param(
            ("2020", "2030"), "incidents", "year 2031 is outside 2020..2030", id="incident"
        ),
        pytest.param(("2020", "2030"), "devices", "outside 2020..2030", id="devices"),
    ],
)
def test_eligibility_compute_reads_every_file_within_the_configured_year_window(
    truth: pl.DataFrame, tmp_path: Path, window: tuple[str, str], outside: str, problem: str
) -> None:
    incident = APRIL if outside != "incidents" else {**APRIL, "end": "2031-06-01T00:00:00Z"}
    (tmp_path / "inc.json").write_text(json.dumps([incident]))
    until = "2031-06-01T00:00:00Z" if outside == "devices" else ""
    devices = csv(
        tmp_path, f"device_id,gpu_model,suspended,valid_from,valid_to\ngpu-1,A100,false,,{until}\n"
    )
    out = tmp_path / "out.csv"
    first, last = window
    done = cli(
        "eligibility",
        "compute",
        "--season",
        str(SEASON),
        "--heartbeats",
        str(write_all_formats(truth, tmp_path)[0]),
        "--incidents",
        str(tmp_path / "inc.json"),
        "--devices",
        str(devices),
        "--out",
        str(out),
        env=cli_env(
            "sqlite:///unused",
            "http://127.0.0.1:9",
            tmp_path,
            REWARDS_TIMESTAMP_MIN_YEAR=first,
            REWARDS_TIMESTAMP_MAX_YEAR=last,
        ),
    )
    assert done.returncode == 2 and problem in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_eligibility_compute_accepts_files_inside_a_configured_wider_window(
    tmp_path: Path,
) -> None:
    beats = csv(tmp_path, f"{HEADER}gpu-1,1995-04-25T08:00:00Z,b,1\n")
    old = {**APRIL, "start": "1995-04-25T08:05:00Z", "end": "1995-04-25T09:05:00Z"}
    (tmp_path / "inc.json").write_text(json.dumps([old]))
    out = tmp_path / "out.csv"
    done = cli(
        "eligibility",
        "compute",
        "--season",
        str(SEASON),
        "--heartbeats",
        str(beats),
        "--incidents",
        str(tmp_path / "inc.json"),
        "--out",
        str(out),
        env=cli_env(
            "sqlite:///unused",
            "http://127.0.0.1:9",
            tmp_path,
            REWARDS_TIMESTAMP_MIN_YEAR="1990",
            REWARDS_TIMESTAMP_MAX_YEAR="2100",
        ),
    )
    assert done.returncode == 0, done.stderr
