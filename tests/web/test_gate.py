"""The pages' pre-read gate (rewards/web/app.py `session_gate`, run by the API's edge before a
form body is read): a signed-out session is no session, and trouble behind the gate (an
identity provider whose keys were never fetched, an unreachable database) is the 503 page
with Retry-After, never a bare 500 (issue 12, items 8 and 9; DESIGN 10). Real sign-in,
real JWKS and real HTTP over loopback."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
from itsdangerous import TimestampSigner

from rewards.api.verifier import make_verifier
from rewards.db.engine import make_engine
from rewards.sim.server import BackgroundServer
from rewards.web.app import create_site
from tests.api.jwks import ISSUER, TroubledProvider, serving
from tests.api.loopback import stream_chunked
from tests.conftest import Databases
from tests.web.conftest import csrf_of, free_port, sign_in, site_settings
from tests.web.test_sessions import site_on

FORM = "/app/admin/snapshots/v1/publish"


def cookie_for(secret_file: Path, session: dict[str, str]) -> str:
    """A session cookie as the site signs it (Starlette: base64 JSON, then a signature)."""
    body = base64.b64encode(json.dumps(session).encode())
    return TimestampSigner(secret_file.read_text().strip()).sign(body).decode()


def assert_unavailable_page(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text[:300]
    assert answer.headers["content-type"].startswith("text/html")
    assert int(answer.headers["retry-after"]) > 0
    assert "Traceback" not in answer.text


def test_a_form_from_a_signed_out_session_goes_to_sign_in_before_its_body_is_read(
    db_url: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url, serving=True)
    with site_on(engine, tmp_path) as site:
        client = sign_in(site, "admin.example.org", "admin")
        cookie = client.cookies["rewards_session"]
        out = client.post("/app/sign-out", data={"csrf": csrf_of(client, "/app")})
        assert out.status_code == 303
        headers = {"Cookie": f"rewards_session={cookie}"}
        status, sent = stream_chunked(site.url, FORM, headers, budget=16 * 2**20)
    engine.dispose()
    assert status == 303, "a signed-out session's form should go to sign-in unread"
    assert sent < 2 * 2**20, f"the server read {sent} bytes before refusing"


def test_a_form_while_no_key_was_ever_fetched_is_the_503_page(
    databases: Databases, tmp_path: Path
) -> None:
    provider = TroubledProvider(kids=("rsa",))
    provider.mode = "503"
    engine = make_engine(databases.fresh("sqlite"), serving=True)
    with serving(provider) as jwks_url:
        port = free_port()
        settings = site_settings(
            f"http://127.0.0.1:{port}", tmp_path, dev_issuer_enabled=False,
            auth_issuer=ISSUER, auth_jwks_url=jwks_url, auth_jwks_min_refresh_s=0.0,
        )  # fmt: skip
        app = create_site(engine, settings, make_verifier(settings))
        with BackgroundServer(app, port=port) as server:
            token = provider.token(sub="admin.example.org", roles=["admin"])
            cookie = cookie_for(settings.session_secret_file, {"token": token, "sid": "s"})
            answer = httpx.post(
                f"{server.url}{FORM}", data={"confirm": "x"},
                cookies={"rewards_session": cookie}, timeout=30,
            )  # fmt: skip
    engine.dispose()
    assert_unavailable_page(answer)


def test_a_form_while_the_database_is_unreachable_is_the_503_page(
    db_url: str, dialect: str, tmp_path: Path
) -> None:
    """Signed in on one worker; another worker sharing its keys and secret has lost its
    database."""
    engine = make_engine(db_url, serving=True)
    lost = make_engine(
        f"sqlite:///{tmp_path}"  # a directory: SQLite cannot open it
        if dialect == "sqlite"
        else "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        serving=True,
    )
    with site_on(engine, tmp_path) as site, site_on(lost, tmp_path) as other:
        client = sign_in(site, "admin.example.org", "admin")
        cookie = client.cookies["rewards_session"]
        answer = httpx.post(
            f"{other.url}{FORM}", data={"confirm": "x"},
            cookies={"rewards_session": cookie}, timeout=30,
        )  # fmt: skip
    engine.dispose()
    lost.dispose()
    assert_unavailable_page(answer)


def test_a_valid_session_still_reaches_the_form(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url, serving=True)
    with site_on(engine, tmp_path) as site:
        client = sign_in(site, "admin.example.org", "admin")
        token = csrf_of(client, "/app")
        answer = client.post(FORM, data={"csrf": token, "confirm": "ignition-s2-v1"})
    engine.dispose()
    assert answer.status_code == 404  # past the gate: there is no snapshot v1 here
