"""One mapping from a use case's refusal to an HTTP problem, shared by the API and the
pages: every kind of ServiceError has its status and type, and the message and any
machine-readable members reach the client."""

from __future__ import annotations

import pytest

from rewards.api.problems import BASE, Problem, problem_of
from rewards.services.alerts import AlertError
from rewards.services.audit_bundle import InputsNotKept
from rewards.services.devices import RevertError
from rewards.services.eligibility_view import ViewError
from rewards.services.errors import ComputeUnavailable, ServiceError
from rewards.services.incidents import (
    IncidentError,
    IncidentExists,
    UnknownDevices,
    UnknownIncident,
)
from rewards.services.intervals import BadDays
from rewards.services.publication import RollbackRefused
from rewards.services.publication_key import KeyProblem
from rewards.services.runs import JobBusy
from rewards.services.snapshot_runs import BadEpochs
from rewards.services.snapshots import (
    SnapshotConflict,
    SnapshotError,
    SnapshotNotFound,
    WrongKey,
)

EXPECTED: list[tuple[ServiceError, int, str]] = [
    (SnapshotError("no epoch to snapshot yet"), 422, "invalid-request"),
    (BadEpochs("'5:2': A must not exceed B"), 422, "invalid-request"),
    (SnapshotNotFound("no snapshot s-v9"), 404, "not-found"),
    (SnapshotConflict("s-v1 is published: only a draft can be published"), 409, "conflict"),
    (RollbackRefused("s-v1 is older than the published s-v2"), 409, "rollback-refused"),
    (JobBusy("snapshot:s is already running"), 409, "conflict"),
    (IncidentError("end must be after start"), 422, "invalid-request"),
    (IncidentExists("incident 'x' already exists"), 409, "conflict"),
    (UnknownIncident("no incident 'x'"), 404, "not-found"),
    (AlertError("no open alert 3"), 409, "conflict"),
    (RevertError("nothing to revert"), 422, "invalid-request"),
    (ViewError("no view yet"), 422, "invalid-request"),
    (BadDays("the range ends (2024-04-20) before it starts (2024-04-21)"), 422, "invalid-request"),
    (ComputeUnavailable("cannot reach the Dask scheduler at tcp://h:1"), 503, "unavailable"),
    (KeyProblem("var/publication-key: others may read the publication key"), 503, "unavailable"),
    (WrongKey("s-v1 was made with another publication key"), 503, "unavailable"),
    (InputsNotKept("s-v1: its inputs were not kept"), 409, "conflict"),
]


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    return found | {deeper for sub in found for deeper in _all_subclasses(sub)}


@pytest.mark.parametrize(("error", "status", "slug"), EXPECTED, ids=lambda e: type(e).__name__)
def test_each_kind_of_refusal_is_one_problem(error: ServiceError, status: int, slug: str) -> None:
    problem = problem_of(error)
    assert isinstance(problem, Problem)
    assert (problem.status_code, problem.kind.uri, problem.detail) == (
        status,
        BASE + slug,
        str(error),
    )


def test_unknown_devices_are_listed_for_machines() -> None:
    problem = problem_of(UnknownDevices(["gpu-9", "gpu-10"]))
    assert isinstance(problem, Problem)
    assert problem.status_code == 422
    assert problem.extensions == {"unknown_device_ids": ["gpu-9", "gpu-10"]}


def test_every_service_error_in_the_package_is_covered_here() -> None:
    covered = {type(error) for error, _, _ in EXPECTED} | {UnknownDevices}
    assert _all_subclasses(ServiceError) == covered
