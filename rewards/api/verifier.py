"""The token verifier the settings ask for: the configured OIDC provider, or the local
development issuer when (and only when) it is enabled."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import httpx

from rewards.api.auth import JwksCache, TokenVerifier
from rewards.api.dev_issuer import DEV_ISSUER, DevIssuer
from rewards.settings import REPO_ROOT, Settings, issuer_conflict

MAX_JWKS_BYTES = 256 * 1024


def dev_issuer(settings: Settings) -> DevIssuer:
    """The development issuer (its key file is created on first use)."""
    path = settings.dev_issuer_key_file
    return DevIssuer(path if path.is_absolute() else REPO_ROOT / path, settings.auth_audience)


def fetch_jwks(url: str, timeout_s: float = 5.0) -> Mapping[str, Any]:
    """The provider's JWKS document (refuses bodies over MAX_JWKS_BYTES)."""
    with httpx.stream("GET", url, timeout=timeout_s, follow_redirects=False) as response:
        response.raise_for_status()
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError("JWKS document too large")
    document = httpx.Response(200, content=body).json()
    if not isinstance(document, dict):
        raise ValueError("JWKS document is not an object")
    return document


def make_verifier(settings: Settings) -> TokenVerifier | None:
    """None when no issuer is configured: every authenticated route then answers 401.
    ValueError when the development issuer is enabled beside a real one."""
    conflict = issuer_conflict(settings)
    if conflict:
        raise ValueError(conflict)
    fetch: Callable[[], Mapping[str, Any]]
    if settings.dev_issuer_enabled:
        issuer, fetch = DEV_ISSUER, dev_issuer(settings).jwks
    elif settings.auth_issuer and settings.auth_jwks_url:
        issuer, url = settings.auth_issuer, settings.auth_jwks_url
        fetch = partial(fetch_jwks, url)
    else:
        return None
    verifier = TokenVerifier(
        issuer=issuer,
        audience=settings.auth_audience,
        jwks=JwksCache(
            fetch,
            ttl_s=settings.auth_jwks_ttl_s,
            min_refresh_s=settings.auth_jwks_min_refresh_s,
            stale_s=settings.auth_jwks_stale_s,
            wait_s=settings.auth_jwks_wait_s,
            backoff_max_s=settings.auth_jwks_backoff_max_s,
        ),
        role_claim=settings.auth_role_claim,
        leeway_s=settings.auth_leeway_s,
        max_lifetime_s=settings.auth_max_token_lifetime_s,
    )
    verifier.jwks.prefetch()  # in the background: the first request should find the keys
    return verifier
