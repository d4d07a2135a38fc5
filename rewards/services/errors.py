"""The one family of refusals a use case raises, and how each door should read it.

A service raises a `ServiceError` subclass whose `kind` says what went wrong in door-neutral
words; the API and the pages turn a kind into one HTTP problem (rewards/api/problems.py,
`problem_of`), the CLI into one exit code (rewards/cli). No door catches a service's errors
one by one to translate them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

Kind = Literal["invalid", "not-found", "conflict", "busy", "rollback-refused", "unavailable"]


class ServiceError(Exception):
    """A use case cannot be done as asked; the message says why, in words for people.

    kinds: `invalid` (the request itself is wrong), `not-found` (it names nothing stored),
    `conflict` (the stored state does not allow it now), `busy` (another run holds the lock;
    try later), `rollback-refused` (publishing would roll a season back without an override),
    `unavailable` (something the work needs, such as a compute cluster, is out of reach).
    """

    kind: ClassVar[Kind] = "invalid"

    def extensions(self) -> dict[str, Any]:
        """Machine-readable members a problem document carries besides the message."""
        return {}


class ComputeUnavailable(ServiceError):
    """The compute cluster a run was to use could not be reached, or was lost mid-run: the
    run failed and stored nothing."""

    kind = "unavailable"
