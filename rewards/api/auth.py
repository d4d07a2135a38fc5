"""Bearer JWTs from any OIDC provider, checked the way the 2024 attack called for.

* Keys come from the provider's JWKS, cached for `ttl`; a token whose `kid` is unknown
  makes the cache refetch, at most once per `min_refresh` (so forged kids cannot hammer the
  provider), and a refetch replaces the whole set: a key the provider removed stops
  working at once.
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
a bare 401.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from rewards.core.identifiers import identifier_problem

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
ALGORITHMS = (*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA")
ROLES = frozenset({"supplier", "finance", "admin"})
DEFAULT_MAX_LIFETIME_S = 86_400


class AuthError(Exception):
    """The request is not authenticated; the message is for logs, never for the client."""


@dataclass(frozen=True)
class SigningKey:
    """A provider's public key and the algorithms a token signed by it may name."""

    key: Any
    algorithms: frozenset[str]


def signing_key(entry: Mapping[str, Any]) -> SigningKey | None:
    """The usable public signing key of a JWK entry; None for one that is not (symmetric,
    private, for encryption, or of an unknown type): such a key is never trusted."""
    if entry.get("use", "sig") != "sig":
        return None
    try:
        public = jwt.PyJWK.from_dict(dict(entry)).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        return None
    fits: set[str] = set()
    if isinstance(public, RSAPublicKey):
        fits = set(RSA_ALGORITHMS)
    elif isinstance(public, EllipticCurvePublicKey) and public.curve.name in EC_ALGORITHMS:
        fits = {EC_ALGORITHMS[public.curve.name]}
    elif isinstance(public, Ed25519PublicKey | Ed448PublicKey):
        fits = {"EdDSA"}
    declared = entry.get("alg")
    if declared is not None:
        fits &= {declared}
    return SigningKey(public, frozenset(fits)) if fits else None


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
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def _refresh(self) -> None:
        document = self._fetch()
        keys: dict[str, SigningKey] = {}
        for entry in document.get("keys", []):
            kid = entry.get("kid") if isinstance(entry, Mapping) else None
            if not isinstance(kid, str):
                continue
            key = signing_key(entry)
            if key is not None:
                keys[kid] = key
        self._keys = keys
        self._fetched_at = self._clock()
        self.fetches += 1

    def key(self, kid: str) -> SigningKey | None:
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
        return Principal(subject=subject, roles=roles_of(claims, self.role_claim))
