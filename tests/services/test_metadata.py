"""Device metadata (both dialects): a burst of writes by one actor raises an alert from the
pull that stores it; an admin's revert by actor and time range takes exactly those writes
out of force, is audited, survives redelivery, and the next snapshot is the one the
metadata had before them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from sqlalchemy import Engine, text

from rewards.core.surges import SurgePolicy
from rewards.db.devices import metadata_history, store_devices
from rewards.db.engine import unit_of_work
from rewards.services.alerts import list_alerts
from rewards.services.devices import metadata_changes, revert_changes
from rewards.services.ingest import pull_stream, watch_metadata_writes
from rewards.services.snapshot_runs import run_snapshot
from rewards.services.snapshots import stored_suppliers
from rewards.sim.fleet import METADATA_SURGE, SURGE_ACTOR, FleetSpec, device_feed
from rewards.sim.server import BackgroundServer, UptimeSimulator, create_sim_app
from rewards.uptime.client import RetryPolicy, UptimeClient
from tests.seeded import KEY, NOW, POLICY

WATCH = SurgePolicy(baseline_minutes=60, factor=5.0, min_writes=8)
ATTACKER = "worker-api:svc-7"


def test_a_burst_of_metadata_writes_raises_one_alert_from_the_pull_that_stores_it(
    engine: Engine,
) -> None:
    spec = FleetSpec(seed=8, devices=1_500, days=7)
    burst = device_feed(spec).filter(updated_by=SURGE_ACTOR)
    assert burst.height >= WATCH.min_writes  # the scenario's burst, all in one minute
    simulator = UptimeSimulator(spec, token="secret")

    def pull() -> int:
        with (
            BackgroundServer(create_sim_app(simulator)) as server,
            UptimeClient(server.url, "secret", retry=RetryPolicy(backoff_base_s=0.001)) as c,
        ):
            report = pull_stream(
                engine=engine,
                client=c,
                stream="devices",
                policy=POLICY,
                page_size=500,
                max_skew=timedelta(minutes=5),
                clock=lambda: NOW,
                surges=WATCH,
            )
        assert report.caught_up, report.error
        return report.alerts

    assert pull() == 1
    (alert,) = list_alerts(engine)
    assert (alert.kind, alert.actor, alert.route) == (
        "metadata-surge",
        SURGE_ACTOR,
        f"device-feed {METADATA_SURGE:%Y-%m-%dT%H:%MZ}",
    )
    # raised by the first page that took the minute over the threshold, not at the end
    written = burst.unique(["device_id", "updated_us"]).height
    assert WATCH.min_writes <= alert.writes <= written
    assert not alert.blocked and alert.status == "open"
    # the registry's own writes (registrations over months, changes over the week) are quiet
    assert pull() == 0 and len(list_alerts(engine)) == 1  # and a re-pull raises nothing new
    with engine.connect() as connection:
        audited = connection.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'alert.raise'")
        ).scalar()
    assert audited == 1


def test_a_feed_burst_straddling_a_minute_edge_raises_an_alert(engine: Engine) -> None:
    """Ten writes in two seconds, five each side of a minute's edge (the threshold is 8).
    Counted per calendar minute they were 5 + 5 and raised nothing."""
    edge = datetime(2024, 4, 23, 9, 5, tzinfo=UTC)
    records = [
        {
            "device_id": f"gpu-x{i}",
            "owner_id": "owner-x",
            "gpu_model": "H100",
            "gpu_count": 1,
            "status": "active",
            "registered_at": edge - timedelta(days=30),
            "updated_at": edge + timedelta(seconds=-1 if i < 5 else 0),
            "updated_by": ATTACKER,
        }
        for i in range(10)
    ]
    with unit_of_work(engine) as session:
        store_devices(session, records, now=edge, actor="uptime-api", source="test")
    assert watch_metadata_writes(engine, records, WATCH, now=edge) == 1
    (alert,) = list_alerts(engine)
    assert (alert.actor, alert.writes, alert.route) == (
        ATTACKER,
        10,
        "device-feed 2024-04-23T09:05Z",
    )
    assert watch_metadata_writes(engine, records, WATCH, now=edge) == 0  # raised once


def _surge(engine: Engine, devices: list[str], at: datetime) -> list[dict[str, object]]:
    """`ATTACKER` rewrites the gpu_model of `devices` to H100 at `at`."""
    with unit_of_work(engine) as session:
        now = metadata_history(session).filter(
            pl.col("device_id").is_in(devices) & pl.col("valid_to").is_null()
        )
        records = [
            {
                "device_id": r["device_id"],
                "owner_id": r["owner_id"],
                "gpu_model": "H100",
                "gpu_count": 1,
                "status": r["status"],
                "registered_at": at - timedelta(days=30),
                "updated_at": at,
                "updated_by": ATTACKER,
            }
            for r in now.iter_rows(named=True)
        ]
        store_devices(session, records, now=at, actor="uptime-api", source="test")
    return records


def snapshot(engine: Engine, reason: str):  # type: ignore[no-untyped-def]
    return run_snapshot(
        engine,
        POLICY,
        epochs=range(7),
        trigger="manual",
        triggered_by="t",
        reason=reason,
        clock=lambda: NOW,
        key=KEY,
        lock_ttl=timedelta(minutes=5),
    )


def test_reverting_an_actors_writes_restores_the_snapshot_from_before_them(
    ingested: Engine,
) -> None:
    before = snapshot(ingested, "before the surge").snapshot
    with ingested.connect() as connection:
        victims = list(
            connection.execute(
                text(
                    "SELECT device_id FROM device_metadata WHERE valid_to IS NULL "
                    "AND gpu_model <> 'H100' ORDER BY device_id LIMIT 12"
                )
            ).scalars()
        )
    at = datetime(2024, 4, 23, 9, 5, tzinfo=UTC)
    written = _surge(ingested, victims, at)
    surged = snapshot(ingested, "after the surge").snapshot
    assert surged.content_hash != before.content_hash  # H100 weighs more from epoch 4 on

    # another actor's change in the same window is not touched
    last = next(r for r in written if r["device_id"] == victims[-1])
    ops = {**last, "gpu_model": "A100", "gpu_count": 5, "updated_by": "ops"}
    ops["updated_at"] = at + timedelta(minutes=1)
    with unit_of_work(ingested) as session:
        store_devices(session, [ops], now=at, actor="uptime-api", source="test")
    reverted = revert_changes(
        ingested,
        actor=ATTACKER,
        since=at - timedelta(minutes=5),
        until=at + timedelta(minutes=5),
        by="admin@test",
        now=NOW,
        reason="leaked worker credential",
    )
    assert {v.device_id for v in reverted} == set(victims)
    assert all(v.actor == ATTACKER and v.reverted_by == "admin@test" for v in reverted)
    assert len(reverted) == len(written)

    # the ops change stays; the H100s are gone from what is in force
    with unit_of_work(ingested) as session:
        live = metadata_history(session)
    current = live.filter(pl.col("valid_to").is_null() & pl.col("device_id").is_in(victims))
    assert "H100" not in set(current.get_column("gpu_model"))
    history = metadata_changes(ingested, device_id=victims[-1], limit=100)
    assert [v.actor for v in history][-2:] == [ATTACKER, "ops"]
    assert history[-2].reverted_at is not None and history[-1].reverted_at is None

    # a redelivery of a reverted write does not bring it back
    with unit_of_work(ingested) as session:
        assert store_devices(session, written[:3], now=NOW, actor="uptime-api", source="t") == 0
    with ingested.connect() as connection:
        audited = connection.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'device.metadata.reverted'")
        ).scalar()
    assert audited == len(written)

    # without the ops change the rerun would equal `before`; with it, all but that device
    after = snapshot(ingested, "after the revert").snapshot
    assert after.version == surged.version + 1
    assert after.content_hash != surged.content_hash


def test_a_revert_of_only_the_attackers_writes_gives_back_the_exact_snapshot(
    ingested: Engine,
) -> None:
    before = snapshot(ingested, "before").snapshot
    with ingested.connect() as connection:
        victims = list(
            connection.execute(
                text("SELECT DISTINCT device_id FROM device_metadata ORDER BY device_id LIMIT 9")
            ).scalars()
        )
    at = datetime(2024, 4, 23, 9, 5, tzinfo=UTC)
    _surge(ingested, victims, at)
    assert snapshot(ingested, "surged").snapshot.content_hash != before.content_hash
    revert_changes(
        ingested,
        actor=ATTACKER,
        since=at,
        until=at + timedelta(minutes=1),
        by="admin@test",
        now=NOW,
        reason="leaked worker credential",
    )
    after = snapshot(ingested, "reverted").snapshot
    # the same inputs and the same bytes; the Merkle root differs only because its leaves
    # name the snapshot version
    assert (after.input_fingerprint, after.content_hash) == (
        before.input_fingerprint,
        before.content_hash,
    )
    assert stored_suppliers(ingested, after).equals(stored_suppliers(ingested, before))
