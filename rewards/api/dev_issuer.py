"""A development token issuer for the embedded default: off unless enabled in settings.

It signs ES256 tokens with a local P-256 key (created on first use, file mode 0600) whose
public half the engine serves as a JWKS and trusts like any OIDC provider's. Production
uses a real provider (Auth0, Okta, ...) and leaves this disabled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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
from rewards.core import identifier_problem

DEV_ISSUER = "urn:ignition-rewards:dev-issuer"
CODE_AUDIENCE = "urn:ignition-rewards:dev-issuer:code"
CODE_TTL = timedelta(seconds=60)


class CodeRefused(ValueError):
    """An authorization code that cannot be redeemed (the message is for logs)."""


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of `verifier` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


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

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.kid})

    def authorization_code(
        self,
        *,
        subject: str,
        roles: Iterable[str],
        client_id: str,
        redirect_uri: str,
        challenge: str,
        nonce: str | None,
        now: datetime,
    ) -> str:
        """A one-minute authorization code for the OIDC flow: self-contained and signed, so
        any worker process can redeem it, and bound to the client, its redirect URI and its
        PKCE challenge."""
        wanted = sorted(set(roles))
        self.token(subject, wanted, now=now, ttl=CODE_TTL)  # the same checks as a token
        return self._sign(
            {
                "iss": DEV_ISSUER,
                "aud": CODE_AUDIENCE,
                "sub": subject,
                "roles": wanted,
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "challenge": challenge,
                "nonce": nonce,
                "iat": int(now.timestamp()),
                "exp": int((now + CODE_TTL).timestamp()),
            }
        )

    def redeem(
        self, code: str, *, client_id: str, redirect_uri: str, verifier: str, now: datetime
    ) -> dict[str, Any]:
        """The token response for `code` (raises CodeRefused): an access token for the
        engine's audience and an ID token for the client, both valid for an hour."""
        try:
            claims = jwt.decode(
                code,
                self._key.public_key(),
                algorithms=["ES256"],
                audience=CODE_AUDIENCE,
                issuer=DEV_ISSUER,
                options={"require": ["exp", "sub", "aud", "iss"], "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise CodeRefused(f"code: {type(exc).__name__}") from None
        if claims.get("client_id") != client_id or claims.get("redirect_uri") != redirect_uri:
            raise CodeRefused("code issued to another client or redirect URI")
        if not hmac.compare_digest(s256(verifier), str(claims.get("challenge"))):
            raise CodeRefused("PKCE verifier does not match the challenge")
        ttl = timedelta(hours=1)
        id_claims = {
            "iss": DEV_ISSUER,
            "aud": client_id,
            "sub": claims["sub"],
            "iat": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        if claims.get("nonce"):
            id_claims["nonce"] = claims["nonce"]
        return {
            "access_token": self.token(claims["sub"], claims["roles"], now=now, ttl=ttl),
            "id_token": self._sign(id_claims),
            "token_type": "Bearer",
            "expires_in": int(ttl.total_seconds()),
        }

    def token(self, subject: str, roles: Iterable[str], *, now: datetime, ttl: timedelta) -> str:
        """A signed token for `subject` with `roles` (each one of ROLES)."""
        wanted = sorted(set(roles))
        unknown = [r for r in wanted if r not in ROLES]
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; choose from {sorted(ROLES)}")
        problem = identifier_problem(subject)
        if problem is not None:
            raise ValueError(f"the subject {problem}")
        claims = {
            "iss": DEV_ISSUER,
            "aud": self.audience,
            "sub": subject,
            "roles": wanted,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
        }
        return self._sign(claims)
