"""Leases (job locks and scheduler leadership), cursors and metadata history."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from rewards.db import state
from rewards.db.devices import device_history, store_devices
from rewards.db.engine import unit_of_work
from tests.builders import at

NOW = at("2024-04-25T08:00Z")
TTL = timedelta(seconds=30)


def acquire(engine, holder: str, now=NOW) -> bool:  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as session:
        return state.try_acquire_lease(session, name="job:x", holder=holder, now=now, ttl=TTL)


def test_a_held_lease_refuses_others_until_it_lapses(engine) -> None:  # type: ignore[no-untyped-def]
    assert acquire(engine, "a")
    assert not acquire(engine, "b")
    assert acquire(engine, "a", NOW + timedelta(seconds=10))  # renewal
    assert not acquire(engine, "b", NOW + timedelta(seconds=39))
    assert acquire(engine, "b", NOW + timedelta(seconds=41))
    assert not acquire(engine, "a", NOW + timedelta(seconds=42))


def test_a_released_lease_is_free_at_once(engine) -> None:  # type: ignore[no-untyped-def]
    assert acquire(engine, "a")
    with unit_of_work(engine) as session:
        state.release_lease(session, name="job:x", holder="b")  # not b's to release
    assert not acquire(engine, "b")
    with unit_of_work(engine) as session:
        state.release_lease(session, name="job:x", holder="a")
    assert acquire(engine, "b")


def test_cursor_moves_only_with_its_transaction(engine) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as session:
        state.set_cursor(session, "heartbeats", "100", now=NOW)
    try:
        with unit_of_work(engine) as session:
            state.set_cursor(session, "heartbeats", "200", now=NOW)
            raise RuntimeError("crash before commit")
    except RuntimeError:
        pass
    with unit_of_work(engine) as session:
        assert state.get_cursor(session, "heartbeats") == "100"


def device(updated: str, **changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "device_id": "gpu-1",
        "owner_id": "owner-1",
        "gpu_model": "A100",
        "gpu_count": 1,
        "status": "active",
        "registered_at": at("2024-01-01T00:00Z"),
        "updated_at": at(updated),
    }
    record.update(changes)
    return record


def test_metadata_history_keeps_every_version_whatever_the_arrival_order(engine) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as session:
        store_devices(
            session,
            [device("2024-04-25T09:05Z", gpu_model="H100")],
            now=NOW,
            actor="uptime-api",
            source="test",
        )
    with unit_of_work(engine) as session:  # an older version arrives late, then a redelivery
        added = store_devices(
            session,
            [
                device("2024-04-01T00:00Z"),
                device("2024-04-25T09:05Z", gpu_model="H100"),
                device("2024-04-02T00:00Z"),
            ],
            now=NOW,
            actor="uptime-api",
            source="test",
        )
    assert added == 1  # the redelivery and the unchanged 04-02 record add nothing
    with unit_of_work(engine) as session:
        versions = [
            (v.gpu_model, v.valid_from, v.valid_to) for v in device_history(session, "gpu-1")
        ]
        changes = (
            session.connection()
            .execute(text("SELECT subject FROM audit_log WHERE action = 'device.metadata.changed'"))
            .scalars()
            .all()
        )
    assert versions == [
        ("A100", at("2024-04-01T00:00Z"), at("2024-04-25T09:05Z")),
        ("H100", at("2024-04-25T09:05Z"), None),
    ]
    assert changes == []  # the H100 version came first, so no stored version was changed


def test_a_change_closes_the_previous_version_and_is_audited(engine) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(engine) as session:
        store_devices(
            session, [device("2024-04-01T00:00Z")], now=NOW, actor="uptime-api", source="test"
        )
    with unit_of_work(engine) as session:
        store_devices(
            session,
            [device("2024-04-25T09:05Z", gpu_model="H100")],
            now=NOW,
            actor="uptime-api",
            source="test",
        )
    with unit_of_work(engine) as session:
        history = device_history(session, "gpu-1")
        audit = (
            session.connection()
            .execute(text("SELECT actor, subject, details FROM audit_log"))
            .all()
        )
    assert [v.valid_to for v in history] == [at("2024-04-25T09:05Z"), None]
    assert len(audit) == 1 and audit[0][1] == "gpu-1" and '"H100"' in audit[0][2]
