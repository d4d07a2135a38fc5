"""Signing out ends the session everywhere (issue 12, item 9): a copied session cookie no
longer opens a page, and the access token that was inside it no longer works against the
API, in this process or any other serving the same database. Real sign-in through the
development issuer over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from itsdangerous import TimestampSigner
from sqlalchemy import Engine

from rewards.api.verifier import make_verifier
from rewards.db.engine import make_engine
from rewards.sim.server import BackgroundServer
from rewards.web.app import create_site
from tests.web.conftest import Site, csrf_of, free_port, sign_in, site_settings


@contextmanager
def site_on(engine: Engine, tmp: Path) -> Iterator[Site]:
    """A served site (API and pages); every one made on `tmp` shares its keys and secret,
    as worker processes do."""
    port = free_port()
    settings = site_settings(f"http://127.0.0.1:{port}", tmp)
    with BackgroundServer(create_site(engine, settings, make_verifier(settings)), port=port):
        yield Site(f"http://127.0.0.1:{port}", engine, settings, [], "")


def token_in(cookie: str) -> str:
    """The access token kept in a Starlette session cookie (base64 JSON, then signature)."""
    payload = cookie.split(".", 1)[0]
    data = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    return str(data["token"])


def me(url: str, token: str) -> int:
    return httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_after_sign_out_a_copied_cookie_and_its_token_are_refused_by_every_process(
    db_url: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url, serving=True)
    with site_on(engine, tmp_path) as site, site_on(engine, tmp_path) as other:
        client = sign_in(site, "admin-1", "admin")
        kept = sign_in(site, "admin-1", "admin")  # another session of the same person
        cookie = client.cookies["rewards_session"]
        token = token_in(cookie)
        assert me(site.url, token) == 200 and me(other.url, token) == 200
        thief = httpx.Client(base_url=other.url, follow_redirects=False)
        thief.cookies.set("rewards_session", cookie)
        assert thief.get("/app").status_code == 200  # a copy works while signed in

        out = client.post("/app/sign-out", data={"csrf": csrf_of(client, "/app")})
        assert out.status_code == 303

        for url in (site.url, other.url):
            copied = httpx.Client(base_url=url, follow_redirects=False)
            copied.cookies.set("rewards_session", cookie)
            answer = copied.get("/app")
            assert answer.status_code == 303, f"{url}: the copied cookie still opens pages"
            assert answer.headers["location"].startswith("/app/sign-in")
            assert me(url, token) == 401, f"{url}: the signed-out token still works"
        assert kept.get("/app").status_code == 200  # only the signed-out session ended
        assert me(site.url, token_in(kept.cookies["rewards_session"])) == 200
    engine.dispose()


def test_a_session_cookie_without_a_server_side_session_is_no_session(
    db_url: str, tmp_path: Path
) -> None:
    """A cookie holding a valid token but no session id the server issued (one signed before
    sessions were stored, or forged with a stolen secret) does not open pages."""
    engine = make_engine(db_url, serving=True)
    with site_on(engine, tmp_path) as site:
        client = sign_in(site, "admin-1", "admin")
        token = token_in(client.cookies["rewards_session"])
        secret = (tmp_path / "session-secret").read_text().strip()
        body = base64.b64encode(json.dumps({"token": token, "csrf": "x"}).encode())
        forged = TimestampSigner(secret).sign(body).decode()
        bare = httpx.Client(base_url=site.url, follow_redirects=False)
        bare.cookies.set("rewards_session", forged)
        assert bare.get("/app").status_code == 303
    engine.dispose()
