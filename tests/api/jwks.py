"""A switchable OIDC provider for the auth tests: keys of every family (RSA, EC P-256 and
P-384, Ed25519) served as a JWKS over real loopback HTTP, which can be told to answer 503,
garbage, or slowly, as a provider in trouble would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from rewards.sim.server import BackgroundServer

ISSUER = "https://id.example.test/"
AUDIENCE = "ignition-rewards"

# kid -> (how the key is made, the algorithm it signs with)
KEY_TYPES = {
    "rsa": "RS256",
    "ec256": "ES256",
    "ec384": "ES384",
    "ed25519": "EdDSA",
}
FAMILIES = ("RS256", "PS256", "ES256", "ES384", "EdDSA")


def _private(kid: str) -> Any:
    if kid.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kid.startswith("ec384"):
        return ec.generate_private_key(ec.SECP384R1())
    if kid.startswith("ec"):
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _public_jwk(key: Any) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return dict(json.loads(RSAAlgorithm.to_jwk(public)))
    if isinstance(public, ec.EllipticCurvePublicKey):
        return dict(json.loads(ECAlgorithm.to_jwk(public)))
    return dict(json.loads(OKPAlgorithm.to_jwk(public)))


class TroubledProvider:
    """Signs tokens with its keys; its JWKS answers per `mode`: "ok", "503", "garbage" or
    "slow" (sleeps `slow_s`, then answers)."""

    def __init__(self, kids: tuple[str, ...] = tuple(KEY_TYPES), slow_s: float = 5.0) -> None:
        self.private = {kid: _private(kid) for kid in kids}
        self.mode = "ok"
        self.slow_s = slow_s
        self.requests = 0
        self._lock = threading.Lock()

    def document(self) -> dict[str, Any]:
        keys = []
        for kid, key in self.private.items():
            keys.append({**_public_jwk(key), "kid": kid, "alg": KEY_TYPES[kid], "use": "sig"})
        return {"keys": keys}

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/.well-known/jwks.json")
        def jwks() -> Response:
            with self._lock:
                self.requests += 1
                mode = self.mode
            if mode == "503":
                return PlainTextResponse("upstream unavailable", status_code=503)
            if mode == "garbage":
                return PlainTextResponse("<html>maintenance</html>", status_code=200)
            if mode == "slow":
                time.sleep(self.slow_s)
            return Response(json.dumps(self.document()), media_type="application/json")

        return app

    def token(self, kid: str = "rsa", **overrides: Any) -> str:
        claims = claims_of(**overrides)
        alg = KEY_TYPES[kid]
        return jwt.encode(claims, self.private[kid], algorithm=alg, headers={"kid": kid})


@contextmanager
def serving(provider: TroubledProvider) -> Iterator[str]:
    """The provider's JWKS URL, served on loopback while the block runs."""
    with BackgroundServer(provider.app()) as server:
        yield f"{server.url}/.well-known/jwks.json"


def claims_of(**overrides: Any) -> dict[str, Any]:
    """A supplier's valid claims for five minutes from now; an override of None drops a claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "owner-00042",
        "roles": ["supplier"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}
