"""The web pages on the API's FastAPI app: session middleware, sign-in, the pages of each
role, static files, and HTML error pages under /app (the API keeps its JSON errors)."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rewards.api.app import create_app
from rewards.api.auth import AuthError, TokenVerifier
from rewards.api.edge import carries_body
from rewards.api.problems import Problem, http_problem
from rewards.services.sessions import session_is_active
from rewards.settings import Settings
from rewards.web.admin import admin_pages
from rewards.web.admin_incidents import incident_pages
from rewards.web.admin_records import record_pages
from rewards.web.finance import finance_pages
from rewards.web.provider import provider
from rewards.web.session import SignInRequired, Viewer, session_secret
from rewards.web.signin import oidc_client, signin
from rewards.web.supplier import supplier_pages
from rewards.web.templates import HERE, origin, render

# what a page may load: only this site; no inline scripts, no framing by others
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; form-action 'self' "
    "{provider}; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


home = APIRouter(prefix="/app", include_in_schema=False)


@home.get("", response_class=HTMLResponse)
def start(request: Request, who: Viewer) -> HTMLResponse:
    """Where each role's pages are."""
    return render(request, "home.html", {"title": "Ignition rewards"})


PAGE_ROUTERS = (
    signin,
    home,
    supplier_pages,
    admin_pages,
    incident_pages,
    record_pages,
    finance_pages,
)


def create_site(engine: Engine, settings: Settings, verifier: TokenVerifier | None) -> FastAPI:
    """The API (rewards/api) with the pages on it: what `rewards api` and `rewards serve`
    serve."""
    app = create_app(engine, settings, verifier)
    install_web(app, settings)
    return app


def install_web(app: FastAPI, settings: Settings) -> None:
    """Add the pages to `app` (call before the app starts)."""
    app.state.oidc = oidc_client(settings, app)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie="rewards_session",
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.public_url.startswith("https://"),
    )
    app.state.gates.append(session_gate)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    if settings.dev_issuer_enabled:
        app.include_router(provider)
    for router in PAGE_ROUTERS:
        app.include_router(router)

    provider_origin = origin(settings.oidc_discovery_url) if settings.oidc_discovery_url else ""
    policy = SECURITY_HEADERS["Content-Security-Policy"].format(provider=provider_origin)
    app.add_middleware(PageHeaders, headers={**SECURITY_HEADERS, "Content-Security-Policy": policy})

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(exc.location, status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def html_errors(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/app"):
            return await http_problem(request, exc)
        titles = {403: "Not allowed", 404: "Not found", 429: "Too many requests"}
        title = titles.get(exc.status_code, "Something went wrong")
        if isinstance(exc, Problem) and exc.kind.status < 500:
            title = exc.kind.title  # a named refusal (a rollback) says which
        page = render(
            request,
            "message.html",
            {"title": title,
             "message": exc.detail if exc.status_code < 500 else "Please try again later."},
            status_code=exc.status_code,
        )  # fmt: skip
        page.headers.update(exc.headers or {})  # Retry-After of a busy database
        return page


SIGNED_IN_PAGES = ("/app/admin", "/app/finance", "/app/supplier")


async def session_gate(scope: Scope) -> Response | None:
    """A form sent to a signed-in page without a valid session (no token, an invalid one,
    or a session signed out or unknown to the server) goes to sign-in before its body is
    read (the API's edge runs this; see rewards/api/edge.py). An identity provider without
    keys or an unreachable database raises, and the edge answers the 503 page."""
    path: str = scope["path"]
    if not path.startswith(SIGNED_IN_PAGES) or not carries_body(scope):
        return None
    request = Request(scope)
    if await anyio.to_thread.run_sync(_session_valid, request):
        return None
    return RedirectResponse(SignInRequired(path).location, status_code=303)


def _session_valid(request: Request) -> bool:
    token, session_id = request.session.get("token"), request.session.get("sid")
    verifier: TokenVerifier | None = request.app.state.verifier
    if not isinstance(token, str) or not isinstance(session_id, str) or verifier is None:
        return False
    try:
        verifier.verify(token)
    except AuthError:
        return False
    return session_is_active(request.app.state.engine, session_id, datetime.now(UTC))


class PageHeaders:
    """Adds the pages' security headers to responses under /app and /dev-issuer. Plain ASGI:
    the API's own responses pass untouched, with no re-streaming (BaseHTTPMiddleware would
    cost every API request)."""

    PREFIXES = ("/app", "/dev-issuer")

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.PREFIXES):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in self.raw}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *self.raw]}
            await send(message)

        await self.app(scope, receive, sending)
