"""Signing in to the pages: the OIDC authorization code flow with PKCE through the
development issuer, over real HTTP; the session cookie's flags; and who is turned away."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Form, Header, HTTPException
from fastapi.responses import RedirectResponse
from jwt.algorithms import RSAAlgorithm

from rewards.api.verifier import make_verifier
from rewards.sim.server import BackgroundServer
from rewards.web.app import create_site
from tests.web.conftest import (
    Site,
    csrf_of,
    free_port,
    hidden_fields,
    prepared_copy,
    serve_site,
    sign_in,
    site_settings,
)


@pytest.fixture(scope="module")
def one_site(databases, seeded, small_fleet, tmp_path_factory) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    """Sign-in does not depend on the database: SQLite only."""
    engine, proposed = prepared_copy(databases, seeded, "sqlite", small_fleet)
    yield from serve_site(engine, tmp_path_factory.mktemp("signin"), proposed)
    engine.dispose()


def test_signing_in_runs_pkce_and_sets_a_strict_session_cookie(one_site: Site) -> None:
    client = httpx.Client(base_url=one_site.url, follow_redirects=False)
    start = client.get("/app/sign-in?next=/app/supplier")
    authorize = urlsplit(start.headers["location"])
    query = parse_qs(authorize.query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43 and query["state"] and query["nonce"]
    form = client.get(start.headers["location"])
    back = client.post(
        "/dev-issuer/authorize",
        data={**hidden_fields(form.text), "subject": one_site.owners[0], "roles": ["supplier"]},
    )
    done = client.get(back.headers["location"])
    assert done.status_code == 303 and done.headers["location"] == "/app/supplier"
    cookie = done.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http on loopback: a Secure cookie would never return
    page = client.get("/app/supplier")
    assert page.status_code == 200 and one_site.owners[0] in page.text


def test_the_cookie_is_secure_when_the_site_is_served_over_https(
    one_site: Site, tmp_path: Path
) -> None:
    closed = free_port()
    settings = site_settings(
        "https://rewards.example.org",
        tmp_path,
        dev_issuer_enabled=False,  # never beside a real provider (DESIGN 10)
        oidc_discovery_url=f"http://127.0.0.1:{closed}/.well-known/openid-configuration",
    )
    app = create_site(one_site.engine, settings, make_verifier(settings))
    with BackgroundServer(app) as server:
        answer = httpx.get(f"{server.url}/app/sign-in", follow_redirects=False)
    assert answer.status_code == 503  # the provider is unreachable: said plainly
    assert "secure" in answer.headers["set-cookie"].lower()
    assert "127.0.0.1" not in answer.text  # no internal detail


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _code(site: Site, challenge: str, redirect: str) -> str:
    client = httpx.Client(base_url=site.url, follow_redirects=False)
    fields = {
        "client_id": site.settings.oidc_client_id,
        "redirect_uri": redirect,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "response_type": "code",
        "state": "s",
    }
    form = client.get("/dev-issuer/authorize", params=fields)
    assert form.status_code == 200
    back = client.post(
        "/dev-issuer/authorize",
        data={**hidden_fields(form.text), "subject": "admin.example.org", "roles": ["admin"]},
    )
    return parse_qs(urlsplit(back.headers["location"]).query)["code"][0]


def test_a_code_is_only_redeemed_with_its_verifier_and_redirect(one_site: Site) -> None:
    verifier, challenge = _pkce()
    redirect = one_site.url + "/app/auth/callback"
    code = _code(one_site, challenge, redirect)
    token = one_site.url + "/dev-issuer/token"
    base = {"grant_type": "authorization_code", "code": code,
            "client_id": one_site.settings.oidc_client_id, "redirect_uri": redirect}  # fmt: skip
    wrong = httpx.post(token, data={**base, "code_verifier": secrets.token_urlsafe(48)})
    assert wrong.status_code == 400 and wrong.json() == {"error": "invalid_grant"}
    elsewhere = {**base, "redirect_uri": one_site.url + "/app/other", "code_verifier": verifier}
    assert httpx.post(token, data=elsewhere).status_code == 400
    tampered = {**base, "code": code[:-3] + "AAA", "code_verifier": verifier}
    assert httpx.post(token, data=tampered).status_code == 400
    good = httpx.post(token, data={**base, "code_verifier": verifier})
    assert good.status_code == 200
    me = httpx.get(
        one_site.url + "/v1/me", headers={"Authorization": f"Bearer {good.json()['access_token']}"}
    )
    assert me.json() == {"subject": "admin.example.org", "roles": ["admin"]}


@pytest.mark.parametrize(
    ("client_id", "redirect"),
    [("another-client", "{site}/app/auth/callback"), (None, "https://evil.example/callback"),
     (None, "{site}/v1/me")],
)  # fmt: skip
def test_the_provider_sends_codes_only_to_this_sites_pages(
    one_site: Site, client_id: str | None, redirect: str
) -> None:
    _, challenge = _pkce()
    params = {
        "client_id": client_id or one_site.settings.oidc_client_id,
        "redirect_uri": redirect.format(site=one_site.url),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    assert httpx.get(one_site.url + "/dev-issuer/authorize", params=params).status_code == 400
    forged = {**params, "subject": "x", "roles": ["admin"]}
    assert httpx.post(one_site.url + "/dev-issuer/authorize", data=forged).status_code == 400


def test_a_callback_without_this_browsers_state_is_refused(one_site: Site) -> None:
    _, challenge = _pkce()
    code = _code(one_site, challenge, one_site.url + "/app/auth/callback")
    victim = httpx.Client(base_url=one_site.url, follow_redirects=False)
    answer = victim.get("/app/auth/callback", params={"code": code, "state": "s"})
    assert answer.status_code == 400 and "Sign-in failed" in answer.text
    assert victim.get("/app").status_code == 303  # still signed out


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/v1/me", "/app\\@evil.example"]
)
def test_after_sign_in_the_browser_only_goes_to_this_sites_pages(
    one_site: Site, target: str
) -> None:
    client = httpx.Client(base_url=one_site.url, follow_redirects=False)
    start = client.get("/app/sign-in", params={"next": target})
    form = client.get(start.headers["location"])
    back = client.post(
        "/dev-issuer/authorize",
        data={**hidden_fields(form.text), "subject": "a.example.org", "roles": ["admin"]},
    )
    assert client.get(back.headers["location"]).headers["location"] == "/app"


def test_signing_out_needs_the_form_token_and_ends_the_session(one_site: Site) -> None:
    client = sign_in(one_site, "admin.example.org", "admin")
    assert client.post("/app/sign-out").status_code == 403
    assert client.post("/app/sign-out", data={"csrf": "guess"}).status_code == 403
    out = client.post("/app/sign-out", data={"csrf": csrf_of(client, "/app")})
    assert out.status_code == 303
    assert client.get("/app/admin").status_code == 303  # back to sign-in


def test_a_tampered_session_cookie_is_no_session(one_site: Site) -> None:
    client = sign_in(one_site, "admin.example.org", "admin")
    cookie = client.cookies["rewards_session"]
    client.cookies.clear()
    client.cookies.set(
        "rewards_session", cookie[:-4] + ("AAAA" if cookie[-4:] != "AAAA" else "BBBB")
    )
    assert client.get("/app/admin").status_code == 303


def test_without_an_issuer_there_is_no_provider_and_no_sign_in(
    one_site: Site, tmp_path: Path
) -> None:
    settings = site_settings("http://127.0.0.1:1", tmp_path, dev_issuer_enabled=False)
    app = create_site(one_site.engine, settings, make_verifier(settings))
    with BackgroundServer(app) as server:
        discovery = httpx.get(f"{server.url}/dev-issuer/.well-known/openid-configuration")
        sign = httpx.get(f"{server.url}/app/sign-in", follow_redirects=False)
    assert discovery.status_code == 404
    assert sign.status_code == 503 and "not configured" in sign.text


class ExternalProvider:
    """An OIDC provider of another origin, as Auth0 or Okta would be: a confidential client
    (client_secret_basic), RS256 tokens, roles in a namespaced claim, codes kept server-side
    and usable once."""

    ROLES_CLAIM = "https://rewards.example/roles"

    def __init__(self, subject: str, roles: list[str], secret: str) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.codes: dict[str, dict[str, str]] = {}
        self.subject, self.roles, self.secret = subject, roles, secret
        self.url = f"http://127.0.0.1:{free_port()}"
        app = FastAPI()
        provider = self

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, object]:
            return {
                "issuer": f"{provider.url}/",
                "authorization_endpoint": f"{provider.url}/authorize",
                "token_endpoint": f"{provider.url}/oauth/token",
                "jwks_uri": f"{provider.url}/.well-known/jwks.json",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
            }

        @app.get("/.well-known/jwks.json")
        def jwks() -> dict[str, object]:
            public = json.loads(RSAAlgorithm.to_jwk(provider.key.public_key()))
            return {"keys": [{**public, "kid": "ext-1", "alg": "RS256", "use": "sig"}]}

        @app.get("/authorize")
        def authorize(
            client_id: str, redirect_uri: str, state: str, nonce: str, code_challenge: str,
            code_challenge_method: str, audience: str,
        ) -> RedirectResponse:  # fmt: skip
            if code_challenge_method != "S256" or audience != "ignition-rewards":
                raise HTTPException(400)
            code = secrets.token_urlsafe(16)
            provider.codes[code] = {
                "challenge": code_challenge,
                "nonce": nonce,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
            }
            return RedirectResponse(f"{redirect_uri}?code={code}&state={state}", status_code=302)

        @app.post("/oauth/token")
        def token(
            code: Annotated[str, Form()],
            code_verifier: Annotated[str, Form()],
            redirect_uri: Annotated[str, Form()],
            authorization: Annotated[str, Header()] = "",
        ) -> dict[str, object]:
            issued = provider.codes.pop(code, None)  # once
            basic = base64.b64encode(f"{issued and issued['client_id']}:{provider.secret}".encode())
            if issued is None or authorization != f"Basic {basic.decode()}":
                raise HTTPException(400, "invalid_grant")
            digest = hashlib.sha256(code_verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != issued["challenge"]:
                raise HTTPException(400, "invalid_grant")
            if redirect_uri != issued["redirect_uri"]:
                raise HTTPException(400, "invalid_grant")
            now = int(time.time())
            common = {"iss": f"{provider.url}/", "sub": provider.subject, "iat": now,
                      "exp": now + 600}  # fmt: skip
            access = {**common, "aud": "ignition-rewards", self.ROLES_CLAIM: provider.roles}
            ident = {**common, "aud": issued["client_id"], "nonce": issued["nonce"]}
            sign = lambda claims: jwt.encode(  # noqa: E731
                claims, provider.key, algorithm="RS256", headers={"kid": "ext-1"}
            )
            return {"access_token": sign(access), "id_token": sign(ident), "token_type": "Bearer"}

        self.app = app


@pytest.mark.parametrize("secret_sent", ["right", "wrong"])
def test_signing_in_through_an_external_provider(
    one_site: Site, tmp_path: Path, secret_sent: str
) -> None:
    provider = ExternalProvider("ops.example.org", ["admin"], secret="s3cret")
    port = free_port()
    settings = site_settings(
        f"http://127.0.0.1:{port}",
        tmp_path,
        dev_issuer_enabled=False,
        auth_issuer=f"{provider.url}/",
        auth_jwks_url=f"{provider.url}/.well-known/jwks.json",
        auth_role_claim=ExternalProvider.ROLES_CLAIM,
        oidc_discovery_url=f"{provider.url}/.well-known/openid-configuration",
        oidc_client_id="rewards-web",
        oidc_client_secret="s3cret" if secret_sent == "right" else "guess",
    )
    app = create_site(one_site.engine, settings, make_verifier(settings))
    with (
        BackgroundServer(provider.app, port=int(provider.url.rsplit(":", 1)[1])),
        BackgroundServer(app, port=port) as server,
    ):
        client = httpx.Client(base_url=server.url, follow_redirects=False)
        to_sign_in = client.get("/app/admin")
        to_provider = client.get(to_sign_in.headers["location"])
        assert to_provider.headers["location"].startswith(f"{provider.url}/authorize?")
        back = httpx.get(to_provider.headers["location"], follow_redirects=False)
        done = client.get(back.headers["location"])
        if secret_sent == "wrong":
            assert done.status_code == 400 and "Sign-in failed" in done.text
            assert client.get("/app/admin").status_code == 303
            return
        assert done.status_code == 303 and done.headers["location"] == "/app/admin"
        page = client.get("/app/admin")
        assert page.status_code == 200 and "ops.example.org" in page.text
        assert provider.url in page.headers["content-security-policy"]  # form-action
        assert client.get("/app/finance").status_code == 403  # roles from the claim


@pytest.mark.parametrize("subject", ["someone@example.org", "owner 1", "owner-\u04361", "o" * 129])
def test_the_dev_issuer_signs_in_only_subjects_the_identifier_rule_accepts(
    one_site: Site, subject: str
) -> None:
    _, challenge = _pkce()
    client = httpx.Client(base_url=one_site.url, follow_redirects=False)
    params = {
        "client_id": one_site.settings.oidc_client_id,
        "redirect_uri": one_site.url + "/app/auth/callback",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    form = client.get("/dev-issuer/authorize", params=params)
    assert 'maxlength="128"' in form.text
    answer = client.post(
        "/dev-issuer/authorize",
        data={**hidden_fields(form.text), "subject": subject, "roles": ["admin"]},
    )
    assert answer.status_code == 422  # no code for a subject every token check would refuse
