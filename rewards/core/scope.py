"""Which devices an incident covers: its scope (DESIGN 4.5), one value object for every door.

A scope is exactly one of `{"all": true}` (every device), `{"device_ids": [...]}` (the
listed devices, each an identifier of DESIGN 10) or `{"agent_version_below": "X"}` (the
devices whose last heartbeat at or before the incident's start carried a version below X,
compared as dotted numbers; a device with none is out of scope). `IncidentScope.parse`
is the only parser: the incidents file, the API schemas, the CLI, the services and the
database loader all go through it, so they refuse the same scopes with the same words.
`to_json` is the canonical form stored with an incident (snapshot fingerprints and content
hashes depend on it, so it never changes for an existing scope), `columns` its cells in
the INCIDENTS frame, `describe` its wording on the pages, `covers` the rule for one device
and `covers_expr` the same rule for the frames of the core.

Adding a scope kind touches this module and its tests only: a field of `IncidentScope`, a
branch in `parse`, `as_dict`, `describe` and `covers`, its column in `SCOPE_COLUMNS` (the
INCIDENTS frame includes them) and its term in `covers_expr`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from rewards.core.identifiers import identifier_problem
from rewards.core.versions import VersionError, version_key

SHAPES = 'one of {"all": true}, {"device_ids": [...]}, {"agent_version_below": "X"}'

# The INCIDENTS frame's columns of a scope (rewards.core.frames includes them).
SCOPE_COLUMNS: Mapping[str, pl.DataType] = {
    "scope_all": pl.Boolean(),
    "scope_device_ids": pl.List(pl.String()),
    "scope_version_below": pl.String(),
}

_SHOWN = 10  # device ids a description names before "and N more"


class ScopeError(ValueError):
    """A scope that is not one of the shapes of DESIGN 4.5; the message says what is wrong."""


@dataclass(frozen=True)
class IncidentScope:
    """The devices an incident covers; exactly one field is set (build it with `parse`)."""

    every: bool = False
    device_ids: tuple[str, ...] | None = None
    version_below: str | None = None

    def __post_init__(self) -> None:
        kinds = sum((self.every, self.device_ids is not None, self.version_below is not None))
        if kinds != 1:
            raise ScopeError(f"'scope' must be {SHAPES}")

    @classmethod
    def every_device(cls) -> IncidentScope:
        """`{"all": true}`: the scope of a fleet-wide incident."""
        return cls(every=True)

    @classmethod
    def parse(cls, scope: object) -> IncidentScope:
        """The scope of a decoded JSON object; ScopeError saying which part is wrong (an
        identifier that is not one, a version that is not dotted numbers, another shape)."""
        if not isinstance(scope, dict) or len(scope) != 1:
            raise ScopeError(f"'scope' must be {SHAPES}")
        ((kind, value),) = scope.items()
        if kind == "all" and value is True:
            return cls(every=True)
        if (
            kind == "device_ids"
            and isinstance(value, list)
            and all(isinstance(d, str) and d for d in value)
        ):
            for index, device_id in enumerate(value):
                if problem := identifier_problem(device_id):
                    raise ScopeError(f"scope device_ids[{index}]: {device_id!r} {problem}")
            return cls(device_ids=tuple(value))
        if kind == "agent_version_below" and isinstance(value, str):
            try:
                version_key(value)
            except VersionError as exc:
                raise ScopeError(f"scope agent_version_below: {exc}") from None
            return cls(version_below=value)
        raise ScopeError(f"scope {scope!r} is not {SHAPES}")

    @classmethod
    def from_json(cls, text: str) -> IncidentScope:
        """The scope of a JSON text (as stored, or as typed on the command line)."""
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScopeError(f"scope is not valid JSON: {exc}") from None
        return cls.parse(decoded)

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of the scope, the shape `parse` reads."""
        if self.every:
            return {"all": True}
        if self.device_ids is not None:
            return {"device_ids": list(self.device_ids)}
        return {"agent_version_below": self.version_below}

    def to_json(self) -> str:
        """The canonical JSON stored with an incident (sorted keys, ids in the order given)."""
        return json.dumps(self.as_dict(), sort_keys=True)

    def columns(self) -> dict[str, Any]:
        """The scope's cells of an INCIDENTS row (SCOPE_COLUMNS)."""
        return {
            "scope_all": self.every,
            "scope_device_ids": list(self.device_ids or ()),
            "scope_version_below": self.version_below,
        }

    def describe(self) -> str:
        """The scope in words, for a person reading the pages."""
        if self.every:
            return "every device"
        if self.device_ids is not None:
            count = len(self.device_ids)
            if not count:
                return "no device"
            shown = ", ".join(self.device_ids[:_SHOWN])
            more = f" and {count - _SHOWN} more" if count > _SHOWN else ""
            return f"{count} device{'' if count == 1 else 's'}: {shown}{more}"
        return f"devices whose agent version was below {self.version_below} at its start"

    def covers(self, device_id: str, agent_version: str | None = None) -> bool:
        """Whether the incident covers `device_id`, whose last heartbeat at or before the
        incident's start carried `agent_version` (None: no heartbeat then). A version that
        is not dotted numbers cannot be shown to be below X: out of scope."""
        if self.every:
            return True
        if self.device_ids is not None:
            return device_id in self.device_ids
        assert self.version_below is not None
        try:
            return agent_version is not None and version_key(agent_version) < version_key(
                self.version_below
            )
        except VersionError:
            return False


def covers_expr(*, versions: bool) -> pl.Expr:
    """`IncidentScope.covers` over a frame of incident-device pairs: SCOPE_COLUMNS, the
    device_id, and with `versions` the sort keys `below_key` (of scope_version_below) and
    `device_key` (of the device's version at the incident's start, null when unknown)."""
    covered = pl.col("scope_all") | pl.col("scope_device_ids").list.contains(pl.col("device_id"))
    if not versions:
        return covered
    # A device with no heartbeat before the incident, or a version that is not dotted
    # numbers, cannot be shown to be below X: it is out of scope.
    return covered | (
        pl.col("below_key").is_not_null()
        & pl.col("device_key").is_not_null()
        & (pl.col("device_key") < pl.col("below_key"))
    )
