"""Who is looking at a page: the access token kept in the signed session cookie, verified on
every request by the API's own verifier, so pages enforce exactly the API's roles, and the
session id beside it, which must name a session the server opened and nobody has signed out
(rewards/services/sessions.py): a copied cookie dies with the session.

A page without a valid session redirects to sign-in (and back afterwards); a signed-in user
without the page's role gets 403. The session cookie is HttpOnly, SameSite=Lax, Secure when
`public_url` is https, and signed with a secret kept in `session_secret_file` (made on first
use, mode 0600) so that every worker process reads the same sessions.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request

from rewards.api.auth import AuthError, KeysUnavailable, Principal, TokenVerifier
from rewards.api.problems import keys_unavailable
from rewards.services.files import secret_file
from rewards.services.sessions import session_is_active
from rewards.settings import REPO_ROOT, Settings

log = logging.getLogger("rewards.web")


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to sign-in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.location = "/app/sign-in?next=" + quote(next_path, safe="/")


def session_secret(settings: Settings) -> str:
    """The cookie-signing secret, created on first use (0600), shared by all workers."""
    path = settings.session_secret_file
    path = path if path.is_absolute() else REPO_ROOT / path
    secret = secret_file(path, lambda: secrets.token_urlsafe(48))
    if len(secret) < 32:
        raise ValueError(f"{path}: the session secret is too short (32 characters at least)")
    return secret


def local_path(candidate: str | None) -> str:
    """`candidate` when it is a path on this site's pages, else the home page (no open
    redirect through ?next=)."""
    if (
        candidate
        and candidate.startswith("/app")
        and "\\" not in candidate
        and "://" not in candidate
    ):
        return candidate
    return "/app"


def viewer(request: Request) -> Principal:
    """The signed-in user (raises SignInRequired)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    token = request.session.get("token")
    session_id = request.session.get("sid")
    verifier: TokenVerifier | None = request.app.state.verifier
    if not isinstance(token, str) or not isinstance(session_id, str) or verifier is None:
        raise SignInRequired(here)
    try:
        who = verifier.verify(token)
    except AuthError as exc:
        log.info("session token refused: %s", exc)
        request.session.clear()
        raise SignInRequired(here) from None
    except KeysUnavailable:  # the one mapping (rewards/api/problems.py): the 503 page
        raise keys_unavailable() from None
    if not session_is_active(request.app.state.engine, session_id, datetime.now(UTC)):
        log.info("session of %s refused: signed out or unknown", who.subject)
        request.session.clear()
        raise SignInRequired(here)
    if not request.app.state.limiter.allow_subject(who.subject):
        raise HTTPException(429, "too many requests", {"Retry-After": "60"})
    request.state.who = who
    return who


def page_role(name: str) -> Callable[..., Principal]:
    """A page dependency admitting only users with role `name` (others: 403)."""

    def check(who: Annotated[Principal, Depends(viewer)]) -> Principal:
        if not who.has(name):
            raise HTTPException(403, f"this page needs the {name} role")
        return who

    return check


Viewer = Annotated[Principal, Depends(viewer)]
SupplierPage = Annotated[Principal, Depends(page_role("supplier"))]
FinancePage = Annotated[Principal, Depends(page_role("finance"))]
AdminPage = Annotated[Principal, Depends(page_role("admin"))]
