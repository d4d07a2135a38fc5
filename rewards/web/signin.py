"""Sign-in to the pages: OpenID Connect authorization code with PKCE (S256), by Authlib.

The provider is found from `oidc_discovery_url`; with none configured and the development
issuer enabled, the engine's own development provider (rewards/web/provider.py) is used, by
the same flow. Authlib keeps state, nonce and the PKCE verifier in the session between the
redirect and the callback, and checks the ID token; the access token is then verified by the
API's verifier and kept in the session: pages accept exactly the tokens the API accepts.
Each sign-in opens a server-side session whose id the cookie carries; signing out ends it.
"""

from __future__ import annotations

import logging
import secrets
import warnings
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

import authlib.deprecate  # noqa: F401 (sets its warning filter first, so ours below wins)
import httpx

with warnings.catch_warnings():
    # Authlib 1.9 announces a move of its httpx integration; the API used here stays
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from rewards.api.auth import AuthError, KeysUnavailable, TokenVerifier
from rewards.services.sessions import end_session, open_session
from rewards.settings import Settings
from rewards.web.session import local_path
from rewards.web.templates import check_csrf, origin, render, site_origin

log = logging.getLogger("rewards.web")

signin = APIRouter(prefix="/app", include_in_schema=False)


# Where the pages' server reaches the development provider: inside its own process (an
# ASGI transport), never over the network, so it works on whatever address the pages are
# served and cannot be sent elsewhere by a forged Host header.
IN_PROCESS = "http://rewards.internal"


def discovery_url(settings: Settings) -> str | None:
    """Where the provider's discovery document is; None when sign-in is not configured."""
    if settings.oidc_discovery_url:
        return settings.oidc_discovery_url
    if settings.dev_issuer_enabled:
        return IN_PROCESS + "/dev-issuer/.well-known/openid-configuration"
    return None


def oidc_client(settings: Settings, app: Any) -> Any | None:
    """The OIDC client of the pages, or None when no provider is configured. The
    development provider is called in-process, and browsers go to its authorize page on
    the address they are using (a relative URL)."""
    url = discovery_url(settings)
    if url is None:
        return None
    oauth = OAuth()
    secret = settings.oidc_client_secret or None
    own = not settings.oidc_discovery_url
    oauth.register(
        name="provider",
        client_id=settings.oidc_client_id,
        client_secret=secret,
        server_metadata_url=url,
        authorize_url="/dev-issuer/authorize" if own else None,
        client_kwargs={
            "scope": settings.oidc_scope,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
            **({"transport": httpx.ASGITransport(app=app)} if own else {}),
        },
    )
    return oauth.create_client("provider")


def _callback(request: Request) -> str:
    return site_origin(request) + "/app/auth/callback"


@signin.get("/sign-in", response_model=None)
async def sign_in(
    request: Request, next: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    """Off to the provider; back at the callback with a code."""
    settings: Settings = request.app.state.settings
    client = request.app.state.oidc
    if client is None:
        return render(
            request,
            "message.html",
            {"title": "Sign-in is not configured", "message": "Set oidc_discovery_url (or "
             "enable the development issuer) to sign in to these pages."},
            status_code=503,
        )  # fmt: skip
    request.session["next"] = local_path(next)
    try:
        redirect: Response = await client.authorize_redirect(
            request, _callback(request), audience=settings.auth_audience
        )
    except Exception as exc:  # the provider's discovery document could not be read
        log.warning("sign-in: provider unavailable: %s", type(exc).__name__)
        return render(
            request,
            "message.html",
            {"title": "Sign-in is unavailable", "message": "The identity provider did not "
             "answer. Try again in a minute."},
            status_code=503,
        )  # fmt: skip
    return redirect


@signin.get("/auth/callback", response_model=None)
async def callback(request: Request) -> Response:
    """The provider's redirect back: code -> tokens (PKCE), then a session."""
    client = request.app.state.oidc
    verifier: TokenVerifier | None = request.app.state.verifier
    if client is None or verifier is None:
        return RedirectResponse("/app/sign-in", status_code=303)
    try:
        tokens = await client.authorize_access_token(request)
        access = tokens.get("access_token")
        # Authlib hands back a refusal without "error" (e.g. a bare 4xx body) as if it were
        # tokens: no access token means no sign-in
        if not isinstance(access, str):
            raise OAuthError(description="no access token in the answer")
        who = await run_in_threadpool(verifier.verify, access)
    except (OAuthError, AuthError) as exc:
        log.info("sign-in refused: %s", exc)
        message = "The sign-in could not be completed. Start again from the sign-in page."
        configured = request.app.state.settings.public_url
        if configured:  # the usual cause: signing in began at another address
            message += (
                f" Sign-in ends at this site's address, {origin(configured)} (its public_url "
                "setting): if you opened the pages at another address, open them there."
            )
        return render(
            request,
            "message.html",
            {"title": "Sign-in failed", "message": message, "retry": True},
            status_code=400,
        )
    except KeysUnavailable:
        return render(
            request,
            "message.html",
            {"title": "Sign-in is unavailable", "message": "The identity provider did not "
             "answer. Try again in a minute.", "retry": True},
            status_code=503,
        )  # fmt: skip
    now = datetime.now(UTC)
    expires = datetime.fromtimestamp(who.expires_at, UTC) if who.expires_at else now
    session_id = await run_in_threadpool(
        partial(
            open_session, request.app.state.engine, subject=who.subject, token=access,
            expires_at=expires, now=now,
        )
    )  # fmt: skip
    target = local_path(request.session.get("next"))
    request.session.clear()  # a fresh session: nothing from before sign-in carries over
    request.session["sid"] = session_id
    request.session["token"] = access
    request.session["csrf"] = secrets.token_urlsafe(32)
    log.info("signed in: %s (%s)", who.subject, ",".join(sorted(who.roles)) or "no role")
    return RedirectResponse(target, status_code=303)


@signin.post("/sign-out", dependencies=[Depends(check_csrf)])
def sign_out(request: Request) -> RedirectResponse:
    """End the session on the server (its cookie and its token are refused from now on, in
    every worker process), then forget it in this browser."""
    session_id = request.session.get("sid")
    if isinstance(session_id, str):
        end_session(request.app.state.engine, session_id, datetime.now(UTC))
    request.session.clear()
    return RedirectResponse("/app/signed-out", status_code=303)


@signin.get("/signed-out", response_class=HTMLResponse)
def signed_out(request: Request) -> HTMLResponse:
    return render(
        request,
        "message.html",
        {"title": "Signed out", "message": "You are signed out.", "retry": True},
    )
