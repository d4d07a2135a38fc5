"""Bearer JWTs from any OIDC provider, checked the way the 2024 attack called for.

* Keys come from the provider's JWKS, cached for `ttl`; a token whose `kid` is unknown
  makes the cache refetch, at most once per `min_refresh` (so forged kids cannot hammer the
  provider), and a refetch replaces the whole set: a key the provider removed stops
  working at once.
* Only asymmetric algorithms are accepted; `alg: none` and HMAC (which a public key can
  be abused to forge) are refused before any key is looked at.
* Issuer, audience, expiry and not-before are checked with a small leeway; `sub`, `exp`,
  `iat`, `iss` and `aud` are required. The subject is the supplier's owner_id. There are
  no shared or universal tokens: a token without a subject is refused.
* Roles come from a configurable claim (a list or a space-separated string; a dotted path
  or a namespaced URL claim); unknown roles are ignored.

Failures are `AuthError` with a short reason for logs; callers answer a bare 401.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
ROLES = frozenset({"supplier", "finance", "admin"})


class AuthError(Exception):
    """The request is not authenticated; the message is for logs, never for the client."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject and the roles it carries."""

    subject: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return role in self.roles


class JwksCache:
    """The provider's signing keys by kid, refetched when stale or asked for an unknown kid
    (rate-limited). `fetch` returns the JWKS document (a dict with "keys")."""

    def __init__(
        self,
        fetch: Callable[[], Mapping[str, Any]],
        *,
        ttl_s: float = 300.0,
        min_refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl_s
        self._min_refresh = min_refresh_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def _refresh(self) -> None:
        document = self._fetch()
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []):
            kid = entry.get("kid") if isinstance(entry, Mapping) else None
            if not isinstance(kid, str):
                continue
            try:
                keys[kid] = jwt.PyJWK.from_dict(dict(entry))
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key we cannot use (e.g. symmetric): never trusted
        self._keys = keys
        self._fetched_at = self._clock()
        self.fetches += 1

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The key `kid`, refetching the set if it is stale or lacks it (rate-limited)."""
        with self._lock:
            now = self._clock()
            age = None if self._fetched_at is None else now - self._fetched_at
            stale = age is None or age >= self._ttl
            missing = kid not in self._keys
            if stale or (missing and (age is None or age >= self._min_refresh)):
                try:
                    self._refresh()
                except Exception as exc:
                    if stale and age is not None and age >= 2 * self._ttl:
                        self._keys = {}  # too old to trust any longer
                    raise AuthError(f"JWKS fetch failed: {type(exc).__name__}") from None
            return self._keys.get(kid)


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    if path in claims:  # namespaced claims such as "https://example.com/roles"
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def roles_of(claims: Mapping[str, Any], role_claim: str) -> frozenset[str]:
    """The known roles in `role_claim` (a list, or a space-separated string)."""
    value = _claim(claims, role_claim)
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list):
        return frozenset()
    return frozenset(r for r in value if isinstance(r, str) and r in ROLES)


@dataclass(frozen=True)
class TokenVerifier:
    issuer: str
    audience: str
    jwks: JwksCache
    role_claim: str = "roles"
    leeway_s: int = 30

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthError otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise AuthError(f"algorithm {algorithm!r} not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token names no key (kid)")
        key = self.jwks.key(kid)
        if key is None:
            raise AuthError(f"unknown key {kid!r}")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise AuthError("token has no subject")
        return Principal(subject=subject, roles=roles_of(claims, self.role_claim))
