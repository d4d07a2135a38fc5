"""The publish page's rollback guard (DESIGN 9): publishing a version older than the
published one is refused unless the override is ticked with a reason; the page says so.
Real sign-in and HTTP, on its own site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from rewards.api.problems import TYPES
from rewards.db.engine import make_engine
from rewards.services.publication import publish
from rewards.services.snapshot_runs import run_snapshot
from rewards.services.snapshots import resolve
from tests.seeded import KEY, LOCK, NOW, POLICY, ingested_copy
from tests.web.conftest import csrf_of, serve_site, sign_in


@pytest.mark.parametrize("dialect", ["sqlite"])  # the page's wiring; API and services test both
def test_the_publish_page_refuses_a_rollback_without_override_and_reason(
    databases, seeded, dialect: str, small_fleet, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(ingested_copy(databases, seeded, dialect, small_fleet))
    for force in (False, True):
        run_snapshot(
            engine, POLICY, epochs=range(7), trigger="manual", triggered_by="t", reason="t",
            clock=lambda: NOW, key=KEY, lock_ttl=LOCK, force=force,
        )  # fmt: skip
    publish(engine, resolve(engine, "v2", "ignition-s2"), by="t", clock=lambda: NOW, lock_ttl=LOCK)
    for site in serve_site(engine, tmp_path, proposed="none"):
        admin = sign_in(site, "admin.example.org", "admin")
        page = admin.get("/app/admin/snapshots/v1/publish")
        assert page.status_code == 200
        assert "Rollback:" in page.text and 'name="override_rollback"' in page.text
        token = csrf_of(admin, "/app/admin/snapshots/v1/publish")
        form = {"csrf": token, "confirm": "ignition-s2-v1"}
        refused = admin.post("/app/admin/snapshots/v1/publish", data=form)
        assert refused.status_code == 409
        assert TYPES["rollback-refused"].title in refused.text  # the page names the refusal
        no_reason = admin.post(
            "/app/admin/snapshots/v1/publish", data={**form, "override_rollback": "true"}
        )
        assert no_reason.status_code == 422
        assert resolve(engine, "v2", "ignition-s2").status == "published"
        done = admin.post(
            "/app/admin/snapshots/v1/publish",
            data={**form, "override_rollback": "true", "reason": "v2 was wrong"},
        )
        assert done.status_code == 303
    assert resolve(engine, "v1", "ignition-s2").status == "published"
    with engine.connect() as connection:
        action, details = connection.execute(
            text("SELECT action, details FROM audit_log ORDER BY id DESC LIMIT 1")
        ).one()
    engine.dispose()
    assert action == "snapshot.rollback"
    assert json.loads(details)["reason"] == "v2 was wrong"
