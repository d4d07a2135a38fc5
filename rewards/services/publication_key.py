"""The engine's publication key (DESIGN 9): 32 random bytes, kept as hex in a file of
mode 0600 made on first use, from which each owner's secret salt for a season is derived
(`core.owner_salt`). Whoever holds it can tell whose each public leaf is; whoever loses
it can no longer hand owners their salts, so it is backed up like a signing key."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

from rewards.services.errors import ServiceError
from rewards.services.files import secret_file


class KeyProblem(ServiceError, ValueError):
    """The key file cannot be used; the message says why."""

    kind = "unavailable"


def publication_key(path: Path) -> bytes:
    """The key in `path`, made there first (0600) when missing; refused when others may
    read the file or it does not hold 32 bytes of hex."""
    text = secret_file(path, lambda: secrets.token_hex(32))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyProblem(f"{path}: others may read the publication key (mode {mode:o}; use 0600)")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise KeyProblem(f"{path}: not a publication key (64 hex digits expected)")
    return key
