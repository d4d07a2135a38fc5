from __future__ import annotations

import pytest

from rewards.core.identifiers import identifier_problem, is_identifier


@pytest.mark.parametrize("value", ["gpu-1", "owner-00207", "a", "A.b_c:d-e", "x" * 128, "GPU-1"])
def test_identifiers_of_ascii_letters_digits_and_dot_underscore_colon_dash_are_accepted(
    value: str,
) -> None:
    assert is_identifier(value)
    assert identifier_problem(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        " gpu-1",
        "gpu-1 ",
        "gpu\u200d-1",  # zero-width joiner
        "gpu-1\u202e",  # right-to-left override
        "gpu-\u0430",  # Cyrillic a
        "x" * 129,
        "gpu\n1",
        "owner@example",
        "auth0|abc",
        "=SUM(1+1)",
    ],
)
def test_look_alikes_padding_and_other_characters_are_refused_with_a_reason(value: str) -> None:
    assert not is_identifier(value)
    assert identifier_problem(value)


def test_non_strings_are_not_identifiers() -> None:
    assert not is_identifier(7)
    assert identifier_problem(None) == "expected a string, got NoneType"
