"""Reading season policy files (the I/O half of rewards.core.policy)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from rewards.core import PolicyError, SeasonPolicy, parse_policy


def load_policy(path: Path) -> SeasonPolicy:
    """The policy in TOML file `path`; PolicyError names the file and the bad key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: season file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse_policy(data)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None
