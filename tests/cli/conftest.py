"""What the command-line tests share: the environment of a `rewards` process on its own
copy of the small ingested fleet."""

from __future__ import annotations

import os

import pytest

from rewards.settings import REPO_ROOT
from tests.seeded import ingested_copy

# the tests' publication key and kept snapshot inputs (tests/conftest.py), not the checkout's
KEPT = ("REWARDS_PUBLICATION_KEY_FILE", "REWARDS_SNAPSHOT_INPUTS_DIR")


def cli_env(url: str) -> dict[str, str]:
    """REWARDS_* for a process on the database at `url`, season ignition-s2 from
    config/seasons; of this process's own REWARDS_* settings only the `KEPT` ones."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_") or k in KEPT}
    variables.update(
        {
            "REWARDS_DATABASE_URL": url,
            "REWARDS_SEASONS_DIR": str(REPO_ROOT / "config" / "seasons"),
            "REWARDS_SEASON": "ignition-s2",
        }
    )
    return variables


@pytest.fixture
def env(databases, seeded, dialect, small_fleet) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """`cli_env` on a copy of the ingested fleet (each dialect)."""
    return cli_env(ingested_copy(databases, seeded, dialect, small_fleet))
