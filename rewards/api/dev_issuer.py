"""A development token issuer for the embedded default: off unless enabled in settings.

It signs ES256 tokens with a local P-256 key (created on first use, file mode 0600) whose
public half the engine serves as a JWKS and trusts like any OIDC provider's. Production
uses a real provider (Auth0, Okta, ...) and leaves this disabled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from rewards.api.auth import ROLES

DEV_ISSUER = "urn:ignition-rewards:dev-issuer"


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC public key: its kid."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class DevIssuer:
    """Signs development tokens; `jwks()` is what verifiers trust."""

    def __init__(self, key_file: Path, audience: str) -> None:
        self.audience = audience
        self._key = self._load_or_create(key_file)
        public = json.loads(ECAlgorithm.to_jwk(self._key.public_key()))
        self.kid = _thumbprint(public)
        self._public = {**public, "kid": self.kid, "alg": "ES256", "use": "sig"}

    @staticmethod
    def _load_or_create(path: Path) -> ec.EllipticCurvePrivateKey:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{path}: not an EC private key")
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        return key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._public)]}

    def token(self, subject: str, roles: Iterable[str], *, now: datetime, ttl: timedelta) -> str:
        """A signed token for `subject` with `roles` (each one of ROLES)."""
        wanted = sorted(set(roles))
        unknown = [r for r in wanted if r not in ROLES]
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; choose from {sorted(ROLES)}")
        if not subject.strip():
            raise ValueError("a token needs a subject")
        claims = {
            "iss": DEV_ISSUER,
            "aud": self.audience,
            "sub": subject,
            "roles": wanted,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})
