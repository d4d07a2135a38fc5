"""Bearer JWTs from any OIDC provider, checked the way the 2024 attack called for.

* Keys come from the provider's JWKS (rewards/api/jwks.py): cached for `ttl`, kept for a
  stale period while the provider is in trouble, refetched in the background with backoff;
  a token whose `kid` is unknown makes it refetch, at most once per `min_refresh`, and a
  refetch replaces the whole set: a key the provider removed stops working at once. With
  no usable keys at all the verifier raises KeysUnavailable (a 503, not a 401).
* Only asymmetric algorithms are accepted; `alg: none` and HMAC (which a public key can
  be abused to forge) are refused before any key is looked at, and the algorithm must fit
  the key the token names (its type, its curve, and the JWK's own `alg` when it has one):
  an ES256 header naming an RSA key is refused like any other bad token (issue 12).
* Issuer, audience, expiry and not-before are checked with a small leeway; `sub`, `exp`,
  `iat`, `iss` and `aud` are required. `exp`, `iat` and `nbf` must be numbers (PyJWT
  alone takes `"exp": "9999999999"`), the lifetime `exp - iat` is capped, and the subject,
  the supplier's owner_id, must be an identifier (DESIGN 10: no newline, no look-alike).
  There are no shared or universal tokens: a token without a subject is refused.
* Roles come from a configurable claim (a list of strings or a space-separated string; a
  dotted path or a namespaced URL claim); unknown roles are ignored, a claim of another
  shape refuses the token.

Failures are `AuthError` with a short reason for logs (never a traceback); callers answer
a bare 401 (503 for KeysUnavailable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from rewards.api.jwks import ALGORITHMS, JwksCache, KeysUnavailable
from rewards.core import identifier_problem

__all__ = ["AuthError", "JwksCache", "KeysUnavailable", "Principal", "TokenVerifier", "roles_of"]

ROLES = frozenset({"supplier", "finance", "admin"})
DEFAULT_MAX_LIFETIME_S = 86_400


class AuthError(Exception):
    """The request is not authenticated; the message is for logs, never for the client."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject and the roles it carries."""

    subject: str
    roles: frozenset[str]
    expires_at: float | None = None  # the token's exp, seconds since the Unix epoch

    def has(self, role: str) -> bool:
        return role in self.roles


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
    """The known roles in `role_claim` (a list of strings, or a space-separated string;
    absent: none). AuthError for a claim of any other shape."""
    value = _claim(claims, role_claim)
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise AuthError(f"role claim {role_claim!r} is not a list of strings")
    return frozenset(r for r in value if r in ROLES)


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class TokenVerifier:
    issuer: str
    audience: str
    jwks: JwksCache
    role_claim: str = "roles"
    leeway_s: int = 30
    max_lifetime_s: int = DEFAULT_MAX_LIFETIME_S

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthError otherwise (KeysUnavailable when no key
        of the provider can be had)."""
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
        if algorithm not in key.algorithms:
            raise AuthError(f"algorithm {algorithm!r} does not fit key {kid!r}")
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
        except Exception as exc:  # PyJWT's own errors, and whatever an odd claim raises in it
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        return self._principal(claims)

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        """The caller of decoded `claims`, after the checks PyJWT leaves out."""
        for name in ("exp", "iat", "nbf"):
            if name in claims and not _is_time(claims[name]):
                raise AuthError(f"claim {name} is not a number")
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > self.max_lifetime_s:
            raise AuthError(f"token lifetime {lifetime:.0f} s is over {self.max_lifetime_s} s")
        subject = claims.get("sub")
        problem = identifier_problem(subject)
        if problem is not None or not isinstance(subject, str):
            raise AuthError(f"subject {problem}")
        roles = roles_of(claims, self.role_claim)
        return Principal(subject=subject, roles=roles, expires_at=claims["exp"])
