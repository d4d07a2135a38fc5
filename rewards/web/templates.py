"""Server-rendered pages: Jinja2 templates (autoescaped) and the CSRF token every form carries.

Forms are protected by a synchronizer token: a random value kept in the signed session
cookie and echoed in a hidden field; a POST whose field does not match, or whose Origin is
another site's, is refused. The session cookie is also SameSite=Lax.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from rewards.core import IncidentScope
from rewards.web import svg

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["svg"] = svg
templates.env.filters["thousands"] = lambda n: f"{n:,}" if isinstance(n, int) else n


def tokens(amount: str) -> str:
    """An exact decimal token amount with thousands separators: '-1234567.5' becomes
    '-1,234,567.5' (the digits untouched: never through a float)."""
    sign, digits = ("-", amount[1:]) if amount.startswith("-") else ("", amount)
    whole, dot, fraction = digits.partition(".")
    if not whole.isdigit():
        return amount
    return f"{sign}{int(whole):,}{dot}{fraction}"


templates.env.filters["tokens"] = tokens


def as_tokens(units: int, decimals: int) -> str:
    """Base units as an exact token amount with separators (as `reward_decimal` writes
    it, then `tokens`): 1234567890 with 6 decimals is '1,234.567890'."""
    sign, magnitude = ("-" if units < 0 else ""), abs(int(units))
    if decimals == 0:
        return tokens(f"{sign}{magnitude}")
    whole, fraction = divmod(magnitude, 10**decimals)
    return tokens(f"{sign}{whole}.{fraction:0{decimals}d}")


def replace_param(query: str, name: str, value: object) -> str:
    """`query` (a query string) with `name` set to `value` (for pagers); without it when
    `value` is empty."""
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != name]
    return urlencode([*pairs, (name, str(value))] if value not in ("", None) else pairs)


templates.env.filters["as_tokens"] = as_tokens
templates.env.filters["replace_param"] = replace_param
# an incident's stored scope (JSON) in words: "every device", "2 devices: gpu-1, gpu-2"
templates.env.filters["scope_words"] = lambda stored: IncidentScope.from_json(stored).describe()


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> None:
    """Refuse a form POST without this session's token or from another origin (403)."""
    sender = request.headers.get("origin")
    if sender and sender != "null" and sender.rstrip("/") != site_origin(request):
        configured = request.app.state.settings.public_url
        if configured and sender.rstrip("/") == request_origin(request):
            raise HTTPException(
                403,
                f"this site's address is {origin(configured)} (the public_url setting), but "
                f"this page was opened at {sender}: open the pages at {origin(configured)}, "
                "or change public_url",
            )
        raise HTTPException(403, "this form was sent from another site")
    form = await request.form()
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not isinstance(expected, str):
        raise HTTPException(403, "this form has expired; reload the page and try again")
    if not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "this form has expired; reload the page and try again")


def origin(url: str) -> str:
    """scheme://host[:port] of `url`."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def request_origin(request: Request) -> str:
    """The origin the browser used for this request (its scheme and Host header)."""
    return f"{request.url.scheme}://{request.url.netloc}"


def site_origin(request: Request) -> str:
    """The pages' origin: the configured public_url's, else the one this request came to
    (unset, the pages work on whatever address a browser uses)."""
    configured: str = request.app.state.settings.public_url
    return origin(configured) if configured else request_origin(request)


def say(request: Request, message: str, tag: str = "") -> None:
    """A message in words for the next page this session sees ("Incident x confirmed");
    `tag` is for tests and scripts (data-said="ran:v3")."""
    request.session["said"] = [message[:500], tag[:100]]


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """`name` rendered with `context`, the signed-in user, the CSRF token and what was
    said (`say`) since the last page."""
    said = request.session.pop("said", None)
    response = templates.TemplateResponse(
        request,
        name,
        {"who": getattr(request.state, "who", None), "csrf": csrf_token(request),
         "said": said if isinstance(said, list) and len(said) == 2 else None, **context},
        status_code=status_code,
    )  # fmt: skip
    response.headers["Cache-Control"] = "no-store"
    return response
