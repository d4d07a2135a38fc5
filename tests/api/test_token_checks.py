"""Tokens that must be refused with a 401, never a 500: an algorithm that does not fit the
named key (issue 12, item 1), and claims of the wrong type, a lifetime over the cap, or a
subject outside the identifier rule (item 10). Keys of every family are served as a real
JWKS over loopback, and the API is served over real HTTP."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from rewards.api.app import create_app
from rewards.api.auth import AuthError, TokenVerifier
from rewards.api.dev_issuer import DevIssuer
from rewards.api.verifier import make_verifier
from rewards.db.engine import make_engine
from rewards.settings import get_settings
from rewards.sim.server import BackgroundServer
from tests.api.jwks import AUDIENCE, FAMILIES, ISSUER, KEY_TYPES, TroubledProvider, serving
from tests.conftest import Databases


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(alg: str, kid: str, signature: bytes = b"\x01" * 64) -> str:
    """A token naming key `kid` with algorithm `alg`, any payload and any signature."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "owner-1", "iat": now, "exp": now + 60}
    header = _b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"


@pytest.fixture(scope="module")
def provider() -> TroubledProvider:
    return TroubledProvider()


@pytest.fixture(scope="module")
def api(
    provider: TroubledProvider, databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, TokenVerifier]]:
    """The API over a fresh SQLite database (no storage is involved in refusing a token),
    trusting the provider's JWKS."""
    with serving(provider) as jwks_url:
        settings = get_settings(
            auth_issuer=ISSUER,
            auth_jwks_url=jwks_url,
            session_secret_file=tmp_path_factory.mktemp("s") / "secret",
        )
        verifier = make_verifier(settings)
        assert verifier is not None
        engine = make_engine(databases.fresh("sqlite"))
        with BackgroundServer(create_app(engine, settings, verifier)) as server:
            yield server.url, verifier
        engine.dispose()


def me(url: str, token: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)


MISMATCHES = [(kid, alg) for kid, own in KEY_TYPES.items() for alg in FAMILIES if alg != own]


@pytest.mark.parametrize(("kid", "alg"), MISMATCHES)
def test_an_algorithm_that_does_not_fit_the_named_key_is_a_401_without_a_traceback(
    api: tuple[str, TokenVerifier],
    provider: TroubledProvider,
    caplog: pytest.LogCaptureFixture,
    kid: str,
    alg: str,
) -> None:
    url, verifier = api
    assert me(url, provider.token(kid)).status_code == 200  # the key itself works
    with pytest.raises(AuthError):
        verifier.verify(forged(alg, kid))
    with caplog.at_level(logging.DEBUG):
        answer = me(url, forged(alg, kid))
    assert answer.status_code == 401, answer.text
    assert "Traceback" not in answer.text
    assert not [r for r in caplog.records if r.exc_info], "a refused token logged a traceback"


def test_a_real_signature_with_another_family_s_algorithm_is_refused(
    api: tuple[str, TokenVerifier], provider: TroubledProvider
) -> None:
    url, _ = api
    # the RSA key's own signature, relabelled as PS256 (same key type, other padding)
    _, body, signature = provider.token("rsa").split(".")
    relabelled = _b64(json.dumps({"alg": "PS256", "kid": "rsa", "typ": "JWT"}).encode())
    assert me(url, f"{relabelled}.{body}.{signature}").status_code == 401


def _now() -> int:
    return int(time.time())


BAD_CLAIMS: list[tuple[str, dict[str, Any]]] = [
    ("exp as a string", {"exp": lambda: str(_now() + 300)}),
    ("iat as a string", {"iat": lambda: str(_now())}),
    ("nbf as a string", {"nbf": lambda: str(_now())}),
    ("exp as a boolean", {"exp": True}),
    ("no iat", {"iat": None}),
    ("a lifetime over the cap", {"exp": lambda: _now() + 2 * 86_400}),
    ("a lifetime of a year", {"iat": lambda: _now() - 10, "exp": lambda: _now() + 365 * 86_400}),
    ("sub with a newline", {"sub": "owner-1\nadmin"}),
    ("sub with a space", {"sub": "owner 1"}),
    ("sub with an at sign", {"sub": "someone@example.org"}),
    ("sub with a look-alike", {"sub": "owner-\u04361"}),
    ("sub too long", {"sub": "o" * 129}),
    ("sub as a number", {"sub": 42}),
    ("sub as a list", {"sub": ["owner-1"]}),
    ("roles as a number", {"roles": 7}),
    ("roles as an object", {"roles": {"admin": True}}),
    ("roles with a number inside", {"roles": ["supplier", 3]}),
]


@pytest.mark.parametrize(("case", "overrides"), BAD_CLAIMS, ids=[c for c, _ in BAD_CLAIMS])
def test_claims_of_the_wrong_type_or_shape_are_a_401(
    api: tuple[str, TokenVerifier],
    provider: TroubledProvider,
    case: str,
    overrides: dict[str, Any],
) -> None:
    url, verifier = api
    claims = {k: v() if callable(v) else v for k, v in overrides.items()}
    token = provider.token("ec256", **claims)
    with pytest.raises(AuthError):
        verifier.verify(token)
    assert me(url, token).status_code == 401


def test_a_lifetime_at_the_cap_and_identifier_subjects_are_accepted(
    api: tuple[str, TokenVerifier], provider: TroubledProvider
) -> None:
    url, _ = api
    now = _now()
    for sub in ("owner-00042", "a", "ops.example.org", "k:1_2-3", "o" * 128):
        answer = me(url, provider.token("ed25519", sub=sub, iat=now, exp=now + 86_400))
        assert answer.status_code == 200 and answer.json()["subject"] == sub
    assert me(url, provider.token("ec384", roles="admin finance")).json()["roles"] == [
        "admin",
        "finance",
    ]


def test_the_lifetime_cap_is_a_setting(provider: TroubledProvider, tmp_path: Path) -> None:
    with serving(provider) as jwks_url:
        settings = get_settings(
            auth_issuer=ISSUER, auth_jwks_url=jwks_url, auth_max_token_lifetime_s=600
        )
        verifier = make_verifier(settings)
        assert verifier is not None
        now = _now()
        assert verifier.verify(provider.token(iat=now, exp=now + 600)).subject == "owner-00042"
        with pytest.raises(AuthError, match="lifetime"):
            verifier.verify(provider.token(iat=now, exp=now + 601))


def test_the_dev_issuer_signs_no_subject_the_identifier_rule_refuses(tmp_path: Path) -> None:
    issuer = DevIssuer(tmp_path / "dev.pem", AUDIENCE)
    for subject in ("a@example.org", "owner-1\n", "owner 1"):
        with pytest.raises(ValueError, match="subject"):
            issuer.token(subject, ["admin"], now=datetime.now(UTC), ttl=timedelta(minutes=5))
