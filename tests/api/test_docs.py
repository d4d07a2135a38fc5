"""The API's documentation works offline and says what clients need (issue 17, item 9):
/docs and /redoc load their scripts from this server, never a CDN; the OpenAPI declares
the bearer scheme (Swagger UI's "Authorize") on every authenticated route and the
refusals each operation can answer, as problem documents. Real HTTP on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import Engine

from rewards.api.app import create_app
from rewards.api.openapi import authenticated
from rewards.api.problems import MEDIA_TYPE
from rewards.api.verifier import make_verifier
from rewards.settings import get_settings
from rewards.sim.server import BackgroundServer


@pytest.fixture
def api(engine: Engine) -> Iterator[httpx.Client]:
    settings = get_settings(dev_issuer_enabled=False)
    with (
        BackgroundServer(create_app(engine, settings, make_verifier(settings))) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


@pytest.mark.parametrize("dialect", ["sqlite"])  # the documentation does not read the database
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_this_server(api: httpx.Client, page: str) -> None:
    html = api.get(page)
    assert html.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    assert assets
    for asset in assets:
        parts = urlsplit(asset)
        assert not parts.netloc, f"{page} loads {asset} from another host"
        if parts.path.startswith("/docs-assets/"):
            loaded = api.get(asset)
            assert loaded.status_code == 200 and len(loaded.content) > 1_000, asset
    assert any(a.startswith("/docs-assets/") and a.endswith(".js") for a in assets)


@pytest.mark.parametrize("dialect", ["sqlite"])
def test_the_openapi_declares_the_bearer_scheme_and_every_refusal(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    checked = {"private": 0, "public": 0}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for code in ("429", "503"):  # a route's own answer for a code stays (/readyz's 503)
                assert code in responses, (method, path, code)
            assert MEDIA_TYPE in responses["429"]["content"], (method, path)
            if authenticated(path):
                assert operation["security"] == [{"bearer": []}], (method, path)
                assert {"401", "403"} <= responses.keys(), (method, path)
                checked["private"] += 1
            else:
                assert operation["security"] == [] and "401" not in responses, (method, path)
                checked["public"] += 1
            if method == "post":
                assert {"409", "413"} <= responses.keys(), (method, path)
    assert checked["private"] >= 10 and checked["public"] >= 2
