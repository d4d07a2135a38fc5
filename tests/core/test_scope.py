"""An incident's scope (DESIGN 4.5): one value object parses, stores, describes and matches."""

from __future__ import annotations

import polars as pl
import pytest

from rewards.core import IncidentScope, ScopeError
from rewards.core.scope import SCOPE_COLUMNS, covers_expr
from rewards.core.versions import version_key_expr


@pytest.mark.parametrize(
    ("scope", "stored"),
    [
        ({"all": True}, '{"all": true}'),
        ({"device_ids": ["gpu-2", "gpu-1"]}, '{"device_ids": ["gpu-2", "gpu-1"]}'),
        ({"agent_version_below": "v0.10"}, '{"agent_version_below": "v0.10"}'),
    ],
)
def test_a_scope_is_stored_as_the_canonical_json_of_what_was_given(
    scope: dict[str, object], stored: str
) -> None:
    parsed = IncidentScope.parse(scope)
    assert parsed.to_json() == stored
    assert IncidentScope.from_json(stored) == parsed
    assert parsed.as_dict() == scope


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ({"all": True, "device_ids": ["a"]}, "'scope' must be one of"),
        ([], "'scope' must be one of"),
        ({"all": False}, "is not one of"),
        ({"device_ids": ["gpu-1", "gpu 2"]}, r"scope device_ids\[1\]: 'gpu 2' may contain only"),
        ({"device_ids": [""]}, "is not one of"),
        ({"agent_version_below": "1.x"}, "agent_version_below: .*not dotted numbers"),
        ({"agent_version_below": 2}, "is not one of"),
        ({"owner_ids": ["o"]}, "is not one of"),
    ],
)
def test_a_scope_of_another_shape_is_refused_saying_what_is_wrong(
    scope: object, message: str
) -> None:
    with pytest.raises(ScopeError, match=message):
        IncidentScope.parse(scope)


def test_stored_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(ScopeError, match="not valid JSON"):
        IncidentScope.from_json("{all}")


def test_a_scope_cannot_be_built_with_two_kinds_or_none() -> None:
    with pytest.raises(ScopeError):
        IncidentScope()
    with pytest.raises(ScopeError):
        IncidentScope(every=True, version_below="1")


def test_a_scope_is_described_in_words() -> None:
    assert IncidentScope.every_device().describe() == "every device"
    assert IncidentScope.parse({"device_ids": ["gpu-1"]}).describe() == "1 device: gpu-1"
    many = IncidentScope.parse({"device_ids": [f"gpu-{i}" for i in range(12)]}).describe()
    assert many.startswith("12 devices: gpu-0, gpu-1") and many.endswith("gpu-9 and 2 more")
    assert "below 1.10" in IncidentScope.parse({"agent_version_below": "1.10"}).describe()


def test_a_version_scope_covers_devices_below_it_as_dotted_numbers_and_not_unknown_ones() -> None:
    below = IncidentScope.parse({"agent_version_below": "1.10"})
    assert below.covers("gpu-1", "1.9.10")
    assert not below.covers("gpu-1", "1.10.0")
    assert not below.covers("gpu-1", None)  # no heartbeat before the incident
    assert not below.covers("gpu-1", "beta")
    listed = IncidentScope.parse({"device_ids": ["gpu-1"]})
    assert listed.covers("gpu-1") and not listed.covers("gpu-2")
    assert IncidentScope.every_device().covers("anything")


def test_the_vectorized_match_agrees_with_covers() -> None:
    scopes = [
        IncidentScope.every_device(),
        IncidentScope.parse({"device_ids": ["gpu-1"]}),
        IncidentScope.parse({"agent_version_below": "1.10"}),
    ]
    devices = [("gpu-1", "1.9"), ("gpu-2", "1.10"), ("gpu-3", None)]
    pairs = pl.DataFrame(
        [
            {**s.columns(), "n": n, "device_id": d, "agent_version": v}
            for n, s in enumerate(scopes)
            for d, v in devices
        ],
        schema={**SCOPE_COLUMNS, "n": pl.Int64, "device_id": pl.String, "agent_version": pl.String},
    ).with_columns(
        below_key=version_key_expr("scope_version_below"),
        device_key=version_key_expr("agent_version"),
    )
    got = pairs.select(covers_expr(versions=True)).to_series().to_list()
    assert got == [scopes[n].covers(d, v) for n in range(3) for d, v in devices]
