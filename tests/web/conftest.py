"""A served site (API + pages) on the april-2024 test fleet, and signing in to it through
the development issuer's real OIDC flow (authorization code with PKCE) over HTTP."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from rewards.api.verifier import make_verifier
from rewards.core.outages import DetectorSettings
from rewards.db.engine import make_engine
from rewards.services.eligibility_view import refresh_view
from rewards.services.incidents import detect
from rewards.services.publication import publish
from rewards.services.snapshot_runs import run_snapshot
from rewards.settings import Settings, get_settings
from rewards.sim.server import BackgroundServer
from rewards.web.app import create_site
from tests.seeded import KEY, LOCK, NOW, POLICY, ingested_copy

EVERY_EPOCH = range(POLICY.epoch_count)


@dataclass
class Site:
    url: str
    engine: Engine
    settings: Settings
    owners: list[str]  # suppliers owning devices now, in order
    proposed: str  # the detector's proposed incident (the forced-upgrade drop)

    def devices_of(self, owner: str) -> list[str]:
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    text(
                        "SELECT device_id FROM device_metadata WHERE owner_id = :o "
                        "AND valid_to IS NULL AND reverted_at IS NULL ORDER BY device_id"
                    ),
                    {"o": owner},
                ).scalars()
            )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def site_settings(url: str, tmp: Path, **overrides: object) -> Settings:
    chosen: dict[str, object] = {
        "public_url": url,
        "dev_issuer_enabled": True,
        "dev_issuer_key_file": tmp / "dev.pem",
        "session_secret_file": tmp / "session-secret",
        "season": "ignition-s2",
        "surge_min_writes": 10_000,
    }
    return get_settings(**{**chosen, **overrides})


def prepared(engine: Engine) -> str:
    """The story so far: a proposed incident for the drop, v1 published without it, and the
    eligibility view; returns the proposed incident's id."""
    proposals = detect(engine, POLICY, now=NOW, settings=DetectorSettings())
    drops = [p.id for p in proposals if p.source == "detector:fleet-drop"]
    assert drops, "the april-2024 fleet should show the forced-upgrade drop"
    snap = run_snapshot(
        engine,
        POLICY,
        epochs=EVERY_EPOCH,
        trigger="manual",
        triggered_by="t",
        reason="before the incident is decided",
        clock=lambda: NOW,
        key=KEY,
        lock_ttl=LOCK,
    ).snapshot
    publish(engine, snap, by="t", clock=lambda: NOW, lock_ttl=LOCK)
    refresh_view(engine, POLICY, trigger="test", clock=lambda: NOW, lock_ttl=LOCK)
    return drops[0]


def prepared_copy(databases, seeded, dialect: str, simulator) -> tuple[Engine, str]:  # type: ignore[no-untyped-def]
    """An engine on a database of its own holding the ingested fleet after `prepared`, and
    the proposed incident's id: prepared once per dialect (a snapshot, its publication and
    the view took 4-8 s a module), then copied as `ingested_copy` copies."""
    made = f"{dialect}+prepared"
    if made not in seeded:
        url = ingested_copy(databases, seeded, dialect, simulator)
        engine = make_engine(url)
        seeded[f"{made}:proposed"] = prepared(engine)
        seeded[made] = url
        engine.dispose()  # a database is copied with no connection open
    return make_engine(databases.copy(seeded[made])), seeded[f"{made}:proposed"]


def serve_site(engine: Engine, tmp: Path, proposed: str, **overrides: object) -> Iterator[Site]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = site_settings(url, tmp, **overrides)
    app = create_site(engine, settings, make_verifier(settings))
    with engine.connect() as connection:
        owners = list(
            connection.execute(
                text(
                    "SELECT DISTINCT owner_id FROM device_metadata WHERE valid_to IS NULL "
                    "ORDER BY owner_id"
                )
            ).scalars()
        )
    with BackgroundServer(app, port=port) as server:
        assert server.url == url
        yield Site(url, engine, settings, owners, proposed)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, databases, seeded, small_fleet, tmp_path_factory) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    engine, proposed = prepared_copy(databases, seeded, request.param, small_fleet)
    yield from serve_site(engine, tmp_path_factory.mktemp("site"), proposed)
    engine.dispose()


HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


def hidden_fields(html: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in HIDDEN.findall(html)}


def sign_in(site: Site, subject: str, *roles: str, next_path: str = "/app") -> httpx.Client:
    """A browser-like client signed in as `subject` with `roles`, through the whole flow:
    page -> sign-in -> provider's form -> code -> callback (PKCE) -> session cookie."""
    client = httpx.Client(base_url=site.url, follow_redirects=False, timeout=30)
    to_sign_in = client.get(next_path)
    assert to_sign_in.status_code == 303, to_sign_in.text
    to_provider = client.get(to_sign_in.headers["location"])
    assert to_provider.status_code == 302
    form = client.get(to_provider.headers["location"])
    assert form.status_code == 200
    fields = hidden_fields(form.text)
    back = client.post(
        "/dev-issuer/authorize", data={**fields, "subject": subject, "roles": list(roles)}
    )
    assert back.status_code == 303
    done = client.get(back.headers["location"])
    assert done.status_code == 303, done.text
    assert done.headers["location"] == next_path
    return client


def csrf_of(client: httpx.Client, page: str) -> str:
    """The CSRF token in a page's forms."""
    fields = hidden_fields(client.get(page).text)
    return fields["csrf"]
