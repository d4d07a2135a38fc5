"""Computing eligibility from an intervals file (what `rewards intervals export` writes):
the same results as from the heartbeats; bad files and missing versions are refused."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from rewards.core import incident_versions, online_intervals
from rewards.inputs import InputError, read_incidents, read_intervals
from rewards.seasons import load_policy
from rewards.services.eligibility import compute_from_files
from rewards.sim.fleet import FleetSpec, delivered_heartbeats, delivery_log
from tests.cli.test_eligibility_files import APRIL, SEASON
from tests.processes import cli, cli_env

POLICY = load_policy(SEASON)


@pytest.fixture(scope="module")
def truth() -> pl.DataFrame:
    return delivered_heartbeats(delivery_log(FleetSpec(seed=4, devices=12, days=7)))


def compute(tmp_path: Path, *args: str) -> tuple[int, str, bytes | None]:
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.csv"
    done = cli(
        "eligibility", "compute", "--season", str(SEASON), "--out", str(out), *args,
        env=cli_env("sqlite:///unused", "http://127.0.0.1:9", tmp_path),
    )  # fmt: skip
    return done.returncode, done.stderr, out.read_bytes() if out.exists() else None


def test_intervals_give_the_same_results_as_the_heartbeats(
    truth: pl.DataFrame, tmp_path: Path
) -> None:
    (tmp_path / "inc.json").write_text(json.dumps([APRIL]))  # scoped by agent version
    truth.write_parquet(tmp_path / "hb.parquet")
    online_intervals(truth, POLICY).write_parquet(tmp_path / "iv.parquet")
    versions = incident_versions(truth, read_incidents(tmp_path / "inc.json"))
    versions.write_csv(tmp_path / "versions.csv")
    incidents = ("--incidents", str(tmp_path / "inc.json"))
    code, err, from_beats = compute(
        tmp_path, "--heartbeats", str(tmp_path / "hb.parquet"), *incidents
    )
    assert code == 0, err
    code, err, from_intervals = compute(
        tmp_path,
        "--intervals", str(tmp_path / "iv.parquet"),
        "--incident-versions", str(tmp_path / "versions.csv"),
        *incidents,
    )  # fmt: skip
    assert code == 0, err
    assert from_beats is not None and from_intervals == from_beats
    # the version-scoped incident credited time: the versions file was used, and agreed
    assert pl.read_csv(from_beats).get_column("credited_s").sum() > 0


def test_without_the_versions_a_version_scoped_incident_is_refused_naming_it(
    truth: pl.DataFrame, tmp_path: Path
) -> None:
    (tmp_path / "inc.json").write_text(json.dumps([APRIL]))
    online_intervals(truth, POLICY).write_parquet(tmp_path / "iv.parquet")
    code, err, written = compute(
        tmp_path,
        "--intervals",
        str(tmp_path / "iv.parquet"),
        "--incidents",
        str(tmp_path / "inc.json"),
    )
    assert code == 2 and "'apr-25' is scoped by agent version" in err and written is None
    # a fleet-wide incident needs no versions
    (tmp_path / "all.json").write_text(json.dumps([{**APRIL, "scope": {"all": True}}]))
    code, err, _ = compute(
        tmp_path,
        "--intervals",
        str(tmp_path / "iv.parquet"),
        "--incidents",
        str(tmp_path / "all.json"),
    )
    assert code == 0, err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "the heartbeats or the intervals, one of them"),
        ({"heartbeats": "hb.parquet", "intervals": "iv.parquet"}, "one of them"),
        ({"heartbeats": "hb.parquet", "versions": "v.csv"}, "go with intervals"),
    ],
)
def test_one_source_of_online_time_is_required(
    tmp_path: Path, kwargs: dict[str, str], message: str
) -> None:
    paths = {k: tmp_path / v for k, v in kwargs.items()}
    with pytest.raises(InputError, match=message):
        compute_from_files(POLICY, **paths)  # type: ignore[arg-type]


def test_a_bad_intervals_file_names_the_row_and_column(truth: pl.DataFrame, tmp_path: Path) -> None:
    good = online_intervals(truth, POLICY)
    path = tmp_path / "iv.parquet"
    good.drop("last_boot_id").write_parquet(path)
    with pytest.raises(InputError, match="missing column 'last_boot_id'"):
        read_intervals(path)
    backwards = good.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.col("start"))
        .otherwise(pl.col("end"))
        .alias("end")
    )
    backwards.write_parquet(path)
    with pytest.raises(InputError, match="row 4, column 'end': not after the start"):
        read_intervals(path)
    first = good.row(0, named=True)
    overlapping = pl.concat(
        [
            good,
            pl.DataFrame(
                [
                    {
                        **first,
                        "start": first["end"] - timedelta(seconds=1),
                        "end": first["end"] + timedelta(hours=1),
                    }
                ],
                schema=good.schema,
            ),
        ]
    )
    overlapping.write_parquet(path)
    with pytest.raises(
        InputError, match=f"row {good.height + 1}, column 'start': the interval overlaps"
    ):
        read_intervals(path)
    assert read_intervals(_write(good, tmp_path)).equals(good)


def _write(frame: pl.DataFrame, folder: Path) -> Path:
    """The intervals as CSV text (RFC 3339 times): read back, they are the same frame."""
    path = folder / "iv.csv"
    frame.with_columns(pl.col("start", "end").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ")).write_csv(
        path
    )
    return path


def interval_inputs(truth: pl.DataFrame, folder: Path) -> tuple[str, ...]:
    """The options of a computation from intervals with a version-scoped incident: its
    files (intervals, incident versions, incidents) written into `folder` from `truth`."""
    (folder / "inc.json").write_text(json.dumps([APRIL]))
    online_intervals(truth, POLICY).write_parquet(folder / "iv.parquet")
    versions = incident_versions(truth, read_incidents(folder / "inc.json"))
    versions.write_csv(folder / "versions.csv")
    return (
        "--intervals", str(folder / "iv.parquet"),
        "--incident-versions", str(folder / "versions.csv"),
        "--incidents", str(folder / "inc.json"),
    )  # fmt: skip


def test_by_shard_the_results_file_is_the_same_bytes(truth: pl.DataFrame, tmp_path: Path) -> None:
    """`--shards` (and `--workers`) write the file an epoch at a time, from the shards'
    results: the same bytes as the whole computation, CSV and Parquet alike."""
    inputs = interval_inputs(truth, tmp_path)
    code, err, whole = compute(tmp_path, *inputs)
    assert code == 0, err
    for extra in (("--shards", "1"), ("--shards", "3"), ("--shards", "2", "--workers", "2")):
        code, err, sharded = compute(tmp_path, *inputs, *extra)
        assert code == 0, err
        assert sharded == whole, extra
    assert "assess: 2 of 2 shards" in err  # progress is shown
    assert not list(tmp_path.glob(".shards-*"))  # the work files are gone
    env = cli_env("sqlite:///unused", "http://127.0.0.1:9", tmp_path)
    files = {}
    for name, extra in (("whole", ()), ("sharded", ("--shards", "4"))):
        files[name] = tmp_path / f"{name}.parquet"
        done = cli(
            "eligibility", "compute", "--season", str(SEASON), "--out", str(files[name]),
            *inputs, *extra, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    sharded = pl.read_parquet(files["sharded"])
    assert sharded.equals(pl.read_parquet(files["whole"]))
    assert sharded.height == POLICY.epoch_count * truth.get_column("device_id").n_unique()


WORKERS_AND_SCHEDULER = ("--workers", "2", "--scheduler", "tcp://h:1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--heartbeats", "hb.parquet", "--shards", "2"), "--shards computes from --intervals"),
        (("--intervals", "iv.parquet", "--workers", "2"), "--scheduler go with --shards"),
        (("--intervals", "iv.parquet", "--scheduler", "tcp://h:1"), "go with --shards"),
        ((*("--intervals", "iv.parquet", "--shards", "2"), *WORKERS_AND_SCHEDULER), "give one"),
        (("--intervals", "iv.parquet", "--shards", "2", "--scheduler", "h:1"), "tcp://host:port"),
        (("--intervals", "iv.parquet", "--shards", "2", "--scheduler", "tcp://h:1/x"), "expected"),
        (("--intervals", "iv.parquet", "--shards", "0"), "greater than or equal to 1"),
    ],
)
def test_shard_options_out_of_place_are_refused(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "iv.parquet").touch()
    (tmp_path / "hb.parquet").touch()
    code, err, written = compute(
        tmp_path, *(str(tmp_path / a) if a.endswith(".parquet") else a for a in args)
    )
    assert code == 2 and message in err and written is None
