"""The identity provider's signing keys, kept so that a provider in trouble never locks
everyone out (DESIGN 10, issue 12).

* Keys are fresh for `ttl`; after that a refetch is due, but the last good keys keep
  verifying for the stale period (default 24 h). Past it they are dropped: too old to
  trust.
* A refetch runs on a background thread, never on a request thread. The request that
  starts one waits for it at most `wait` (a short bound), so a quick provider's rotation
  is seen at once and a slow one costs no request more than that; other requests answer
  from the keys at hand.
* A failed refetch (an error status, a timeout, a document that is not a JWKS with a
  usable key) keeps the last good keys and backs off exponentially, from `backoff_base`
  up to `backoff_max`, so requests do not retry it one by one.
* A token whose `kid` is unknown may start a refetch at most once per `min_refresh`
  (forged kids cannot hammer the provider); a refetch replaces the whole set, so a key the
  provider removed stops working.
* With no usable keys at all (never fetched, or past the stale period) a lookup raises
  KeysUnavailable: the caller answers 503, not 401.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger("rewards.api")

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
ALGORITHMS = (*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA")


class KeysUnavailable(Exception):
    """No usable key set: none was ever fetched, or the last one is past the stale period."""


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


def signing_keys(document: object) -> dict[str, SigningKey]:
    """The usable keys of a JWKS document by kid; ValueError when it has none (a provider
    answering garbage or an empty set is in trouble, not rotating every key away)."""
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWKS document")
    keys: dict[str, SigningKey] = {}
    for entry in entries:
        kid = entry.get("kid") if isinstance(entry, Mapping) else None
        if isinstance(kid, str) and isinstance(entry, Mapping):
            key = signing_key(entry)
            if key is not None:
                keys[kid] = key
    if not keys:
        raise ValueError("the JWKS document has no usable signing key")
    return keys


@dataclass(frozen=True)
class KeysState:
    """What /readyz says of the identity provider."""

    status: str  # fresh, stale, expired, never fetched
    age_s: float | None
    failures: int


class JwksCache:
    """The provider's signing keys by kid (see the module docstring). `fetch` returns the
    JWKS document; it runs on a background thread."""

    def __init__(
        self,
        fetch: Callable[[], Mapping[str, Any]],
        *,
        ttl_s: float = 300.0,
        min_refresh_s: float = 30.0,
        stale_s: float = 86_400.0,
        wait_s: float = 0.5,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl_s
        self._min_refresh = min_refresh_s
        self._stale = max(stale_s, ttl_s)
        self._wait = wait_s
        self._backoff_base = backoff_base_s
        self._backoff_max = backoff_max_s
        self._clock = clock
        self._keys: dict[str, SigningKey] | None = None
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._next_attempt = 0.0
        self._failures = 0
        self._inflight: threading.Event | None = None
        self._lock = threading.Lock()
        self.fetches = 0  # successful fetches

    def prefetch(self) -> None:
        """Start fetching the keys in the background (at start-up), if none is under way."""
        with self._lock:
            if self._inflight is None and self._clock() >= self._next_attempt:
                self._start()

    def key(self, kid: str) -> SigningKey | None:
        """The key `kid` (None if the provider has no such key); KeysUnavailable when there
        is no usable key set at all."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            attempt, started = self._inflight, False
            if attempt is None and self._due(kid, now):
                attempt, started = self._start(), True
            known = self._keys is not None and kid in self._keys
            if attempt is None or not (started or not known):
                return self._lookup(kid)
        attempt.wait(self._wait)  # a short bound: the fetch goes on without us
        with self._lock:
            self._expire(self._clock())
            return self._lookup(kid)

    def state(self) -> KeysState:
        """Fresh, stale, expired or never fetched; never fetches anything."""
        with self._lock:
            now = self._clock()
            age = None if self._fetched_at is None else now - self._fetched_at
            if age is None:
                status = "never fetched"
            elif age < self._ttl:
                status = "fresh"
            elif age < self._stale:
                status = "stale"
            else:
                status = "expired"
            return KeysState(status, age, self._failures)

    def _due(self, kid: str, now: float) -> bool:
        if now < self._next_attempt:
            return False  # backing off after a failure
        if self._keys is None or self._fetched_at is None:
            return True
        if now - self._fetched_at >= self._ttl:
            return True
        since = now - (self._attempted_at or 0.0)
        return kid not in self._keys and since >= self._min_refresh

    def _expire(self, now: float) -> None:
        if self._fetched_at is not None and now - self._fetched_at >= self._stale:
            self._keys = None  # too old to trust any longer

    def _lookup(self, kid: str) -> SigningKey | None:
        if self._keys is None:
            raise KeysUnavailable("no signing keys from the identity provider")
        return self._keys.get(kid)

    def _start(self) -> threading.Event:
        """Start a refetch on a daemon thread (the caller holds the lock)."""
        done = threading.Event()
        self._inflight = done
        self._attempted_at = self._clock()
        threading.Thread(target=self._run, args=(done,), name="jwks-refresh", daemon=True).start()
        return done

    def _run(self, done: threading.Event) -> None:
        try:
            keys = signing_keys(self._fetch())
        except Exception as exc:  # any failure keeps the last good keys
            with self._lock:
                self._failures += 1
                delay = min(self._backoff_max, self._backoff_base * 2 ** (self._failures - 1))
                self._next_attempt = self._clock() + delay
                failures = self._failures
            log.warning(
                "JWKS refetch failed (%s: %s); %d in a row, next try in %.0f s",
                type(exc).__name__, str(exc)[:200], failures, delay,
            )  # fmt: skip
        else:
            with self._lock:
                self._keys = keys
                self._fetched_at = self._clock()
                self._failures = 0
                self._next_attempt = 0.0
                self.fetches += 1
        finally:
            with self._lock:
                self._inflight = None
            done.set()
