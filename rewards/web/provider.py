"""The development issuer as a minimal OIDC provider, so the embedded default signs in to the
pages through the same authorization-code-with-PKCE flow as a real provider.

Mounted only when `dev_issuer_enabled`; anyone who can reach it can sign in as anyone with
any role, which is what a development issuer is for. Its form needs no CSRF token of its own:
the code it hands out is useless without the PKCE verifier and the `state` that only the
signing-in browser's session holds.

* `GET /dev-issuer/.well-known/openid-configuration`: the discovery document.
* `GET /dev-issuer/authorize`: a form to pick a subject and roles (the consent screen).
* `POST /dev-issuer/authorize`: redirects back with a one-minute code.
* `POST /dev-issuer/token`: code + verifier -> access token (the API's audience) + ID token.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from rewards.api.auth import ROLES
from rewards.api.deps import settings_of
from rewards.api.dev_issuer import DEV_ISSUER, CodeRefused
from rewards.api.verifier import dev_issuer
from rewards.core import IDENTIFIER_PATTERN
from rewards.web.templates import render, site_origin

log = logging.getLogger("rewards.web")

provider = APIRouter(prefix="/dev-issuer", include_in_schema=False)

Text = Annotated[str, Query(max_length=512)]
FormText = Annotated[str, Form(max_length=2048)]
# the identifier rule for the form's `pattern` attribute: browsers compile it with the `v`
# flag, where a `-` in a character class must be escaped
SUBJECT_HTML_PATTERN = IDENTIFIER_PATTERN.removeprefix("^").removesuffix("$").replace("-]", r"\-]")


def _check_client(request: Request, client_id: str, redirect_uri: str) -> None:
    """Only this engine's own pages, on the address this browser uses (or public_url), are
    a client here: no open redirect to anywhere else."""
    if client_id != settings_of(request).oidc_client_id:
        raise HTTPException(400, "unknown client_id")
    if not redirect_uri.startswith(site_origin(request) + "/app/"):
        raise HTTPException(400, "redirect_uri is not one of this engine's pages")


@provider.get("/.well-known/openid-configuration")
def discovery(request: Request) -> dict[str, Any]:
    """The provider's metadata; its endpoints on the address asked (the pages' server asks
    in-process) or public_url."""
    base = site_origin(request)
    return {
        "issuer": DEV_ISSUER,
        "authorization_endpoint": f"{base}/dev-issuer/authorize",
        "token_endpoint": f"{base}/dev-issuer/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["openid"],
    }


@provider.get("/authorize", response_class=HTMLResponse)
def authorize_form(
    request: Request,
    client_id: Text,
    redirect_uri: Text,
    code_challenge: Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]{43}$")],
    code_challenge_method: Text,
    response_type: Text = "code",
    state: Text = "",
    nonce: Text = "",
    scope: Text = "openid",
) -> HTMLResponse:
    _check_client(request, client_id, redirect_uri)
    if response_type != "code" or code_challenge_method != "S256":
        raise HTTPException(400, "only response_type=code with code_challenge_method=S256")
    return render(
        request,
        "dev_authorize.html",
        {
            "title": "Development sign-in",
            "fields": {
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "code_challenge": code_challenge,
                "state": state,
                "nonce": nonce,
            },
            "roles": sorted(ROLES),
            "subject_pattern": SUBJECT_HTML_PATTERN,
        },
    )


@provider.post("/authorize")
def authorize(
    request: Request,
    subject: Annotated[str, Form(pattern=IDENTIFIER_PATTERN)],  # DESIGN 10, as tokens
    client_id: FormText,
    redirect_uri: FormText,
    code_challenge: Annotated[str, Form(pattern=r"^[A-Za-z0-9_-]{43}$")],
    state: FormText = "",
    nonce: FormText = "",
    roles: Annotated[list[str] | None, Form()] = None,
) -> RedirectResponse:
    settings = settings_of(request)
    _check_client(request, client_id, redirect_uri)
    chosen = [r for r in roles or [] if r in ROLES]
    code = dev_issuer(settings).authorization_code(
        subject=subject,
        roles=chosen,
        client_id=client_id,
        redirect_uri=redirect_uri,
        challenge=code_challenge,
        nonce=nonce or None,
        now=datetime.now(UTC),
    )
    query = urlencode({"code": code, **({"state": state} if state else {})})
    return RedirectResponse(f"{redirect_uri}?{query}", status_code=303)


@provider.post("/token")
def token(
    request: Request,
    grant_type: FormText,
    code: FormText,
    redirect_uri: FormText,
    client_id: FormText,
    code_verifier: Annotated[str, Form(min_length=43, max_length=128)],
) -> JSONResponse:
    settings = settings_of(request)
    if grant_type != "authorization_code":
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    try:
        answer = dev_issuer(settings).redeem(
            code,
            client_id=client_id,
            redirect_uri=redirect_uri,
            verifier=code_verifier,
            now=datetime.now(UTC),
        )
    except CodeRefused as exc:
        log.info("dev issuer refused a code: %s", exc)
        return JSONResponse({"error": "invalid_grant"}, status_code=400)
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})
