"""Bearer tokens against a real JWKS served over loopback HTTP, with real signatures: who
gets in, and every way a token must be refused (issue 5)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm

from rewards.api.auth import AuthError, JwksCache, TokenVerifier, roles_of
from rewards.api.dev_issuer import DEV_ISSUER, DevIssuer
from rewards.api.verifier import fetch_jwks
from rewards.sim.server import BackgroundServer
from tests.api.jwks import AUDIENCE, ISSUER, claims_of


class Provider:
    """An OIDC provider's signing keys; its JWKS is served over HTTP and can rotate."""

    def __init__(self) -> None:
        self.private: dict[str, rsa.RSAPrivateKey] = {}
        self.served: list[str] = []
        self.requests = 0

    def add(self, kid: str) -> None:
        self.private[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.served.append(kid)

    def remove(self, kid: str) -> None:
        self.served.remove(kid)

    def jwks(self) -> dict[str, Any]:
        self.requests += 1
        keys = []
        for kid in self.served:
            jwk = json.loads(RSAAlgorithm.to_jwk(self.private[kid].public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def token(self, kid: str = "a", **overrides: Any) -> str:
        claims = claims_of(**overrides)
        return jwt.encode(claims, self.private[kid], algorithm="RS256", headers={"kid": kid})

    def public_pem(self, kid: str = "a") -> bytes:
        return (
            self.private[kid]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


@pytest.fixture
def provider() -> Provider:
    made = Provider()
    made.add("a")
    return made


@pytest.fixture
def jwks_url(provider: Provider) -> Iterator[str]:
    app = FastAPI()
    app.get("/.well-known/jwks.json")(provider.jwks)
    with BackgroundServer(app) as server:
        yield f"{server.url}/.well-known/jwks.json"


def verifier(url: str, *, min_refresh_s: float = 0.0, ttl_s: float = 300.0) -> TokenVerifier:
    # these tests are about which tokens get in, not about how long a request waits for
    # keys (tests/api/test_jwks_outage.py): wait as long as the settings allow, so a busy
    # 2-core machine fetching the keys in more than the default 0.5 s is not a refusal
    cache = JwksCache(lambda: fetch_jwks(url), ttl_s=ttl_s, min_refresh_s=min_refresh_s, wait_s=5.0)
    return TokenVerifier(ISSUER, AUDIENCE, cache, role_claim="roles", leeway_s=30)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def test_a_valid_token_gives_its_subject_and_roles(provider: Provider, jwks_url: str) -> None:
    principal = verifier(jwks_url).verify(provider.token(roles=["supplier", "auditor"]))
    assert principal.subject == "owner-00042"
    assert principal.roles == frozenset({"supplier"})  # unknown roles are ignored


def test_the_leeway_forgives_small_clock_skew_only(provider: Provider, jwks_url: str) -> None:
    now = int(time.time())
    check = verifier(jwks_url)
    assert check.verify(provider.token(exp=now - 10)).subject == "owner-00042"
    assert check.verify(provider.token(nbf=now + 10)).subject == "owner-00042"


def claims_now() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 300}


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        # times relative to when the test runs (not to collection, minutes earlier)
        ("expired", {"exp": lambda: int(time.time()) - 120}),
        ("not yet valid", {"nbf": lambda: int(time.time()) + 120}),
        ("wrong issuer", {"iss": "https://evil.example.test/"}),
        ("wrong audience", {"aud": "someone-else"}),
        ("no subject", {"sub": None}),
        ("empty subject", {"sub": " "}),
        ("no expiry", {"exp": None}),
    ],
)
def test_bad_claims_are_refused(
    provider: Provider, jwks_url: str, case: str, overrides: dict[str, Any]
) -> None:
    claims = {k: v() if callable(v) else v for k, v in overrides.items()}
    with pytest.raises(AuthError):
        verifier(jwks_url).verify(provider.token(**claims))


def test_forged_tokens_are_refused(provider: Provider, jwks_url: str) -> None:
    check = verifier(jwks_url)
    claims = {**claims_now(), "sub": "owner-00042", "roles": ["admin"]}
    # alg none
    with pytest.raises(AuthError, match="not accepted"):
        check.verify(_unsigned({"alg": "none", "kid": "a"}, claims) + ".")
    # HS256 "signed" with the provider's public key as the HMAC secret
    body = _unsigned({"alg": "HS256", "kid": "a", "typ": "JWT"}, claims)
    mac = hmac.new(provider.public_pem(), body.encode(), hashlib.sha256).digest()
    with pytest.raises(AuthError, match="not accepted"):
        check.verify(f"{body}.{_b64(mac)}")
    # a real token whose payload was edited (a supplier making itself admin)
    header, _, signature = provider.token().split(".")
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(AuthError, match="invalid token"):
        check.verify(tampered)
    # signed by a key the provider does not have
    stranger = Provider()
    stranger.add("a")
    with pytest.raises(AuthError, match="invalid token"):
        check.verify(stranger.token())
    stranger.add("z")
    with pytest.raises(AuthError, match="unknown key"):
        check.verify(stranger.token(kid="z"))
    for garbage in ("", "abc", "a.b.c", "Bearer x"):
        with pytest.raises(AuthError):
            check.verify(garbage)


def test_a_rotated_key_works_without_restart_and_the_removed_one_stops(
    provider: Provider, jwks_url: str
) -> None:
    check = verifier(jwks_url)
    old = provider.token("a")
    assert check.verify(old).subject == "owner-00042"
    provider.add("b")
    provider.remove("a")  # rotation at the provider
    new = provider.token("b")
    assert check.verify(new).subject == "owner-00042"  # unknown kid: refetched
    with pytest.raises(AuthError, match="unknown key"):
        check.verify(old)  # the removed key is gone with the refetch


def test_unknown_kids_cannot_make_it_hammer_the_provider(provider: Provider, jwks_url: str) -> None:
    check = verifier(jwks_url, min_refresh_s=60)
    check.verify(provider.token())
    before = provider.requests
    for n in range(20):
        forged = jwt.encode(claims_now(), provider.private["a"], "RS256", headers={"kid": f"k{n}"})
        with pytest.raises(AuthError, match="unknown key"):
            check.verify(forged)
    assert provider.requests == before  # within min_refresh: no refetch at all


def test_keys_are_refetched_when_stale(provider: Provider, jwks_url: str) -> None:
    check = verifier(jwks_url, ttl_s=0.2, min_refresh_s=60)
    old = provider.token("a")
    check.verify(old)
    provider.add("b")
    provider.remove("a")
    time.sleep(0.3)
    with pytest.raises(AuthError, match="unknown key"):
        check.verify(old)


def test_roles_come_from_a_configurable_claim() -> None:
    assert roles_of({"roles": "admin finance"}, "roles") == {"admin", "finance"}
    assert roles_of({"https://x.test/roles": ["finance"]}, "https://x.test/roles") == {"finance"}
    assert roles_of({"realm_access": {"roles": ["admin", "x"]}}, "realm_access.roles") == {"admin"}
    assert roles_of({}, "roles") == frozenset()
    for shape in (7, {"admin": True}, ["admin", 3]):  # another shape refuses the token
        with pytest.raises(AuthError, match="not a list of strings"):
            roles_of({"roles": shape}, "roles")


def test_the_dev_issuer_signs_tokens_its_own_jwks_verifies(tmp_path: Path) -> None:
    key_file = tmp_path / "dev" / "key.pem"
    issuer = DevIssuer(key_file, AUDIENCE)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = issuer.token("owner-7", ["supplier"], now=datetime.now(UTC), ttl=timedelta(minutes=5))
    check = TokenVerifier(DEV_ISSUER, AUDIENCE, JwksCache(issuer.jwks), leeway_s=0)
    principal = check.verify(token)
    assert (principal.subject, principal.roles) == ("owner-7", frozenset({"supplier"}))
    again = DevIssuer(key_file, AUDIENCE)  # the same key after a restart
    assert again.kid == issuer.kid
    with pytest.raises(ValueError, match="unknown role"):
        issuer.token("x", ["root"], now=datetime.now(UTC), ttl=timedelta(minutes=5))
    other = TokenVerifier(DEV_ISSUER, "another-audience", JwksCache(issuer.jwks))
    with pytest.raises(AuthError):
        other.verify(token)
