"""The pages on whatever address serves them (issue 17, item 2): with `public_url` unset,
sign-in, its callback and every form follow the address the browser used (another port,
`localhost`); with it set, a browser on another address is told why its form or sign-in
failed. Cross-site forms and redirects elsewhere are still refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.web.conftest import Site, csrf_of, hidden_fields, prepared_copy, serve_site, sign_in


@pytest.fixture(scope="module")
def sites(databases, seeded, small_fleet, tmp_path_factory) -> Iterator[dict[str, Site]]:  # type: ignore[no-untyped-def]
    """The same database served twice on random ports: without public_url, and with it
    set to the 127.0.0.1 address (sign-in does not depend on the database: SQLite)."""
    engine, proposed = prepared_copy(databases, seeded, "sqlite", small_fleet)
    unset = serve_site(engine, tmp_path_factory.mktemp("unset"), proposed, public_url="")
    configured = serve_site(engine, tmp_path_factory.mktemp("set"), proposed)
    yield {"unset": next(unset), "set": next(configured)}
    for server in (unset, configured):
        next(server, None)
    engine.dispose()


def at_localhost(site: Site) -> Site:
    return dataclasses.replace(site, url=site.url.replace("127.0.0.1", "localhost"))


def test_without_public_url_sign_in_and_forms_follow_the_browsers_address(
    sites: dict[str, Site],
) -> None:
    site = at_localhost(sites["unset"])
    owner = site.owners[0]
    with httpx.Client(base_url=site.url, follow_redirects=False, timeout=30) as client:
        start = client.get("/app/sign-in")
        assert start.status_code == 302
        to = urlsplit(start.headers["location"])  # the provider's page, on this address
        assert (to.scheme, to.netloc, to.path) == ("", "", "/dev-issuer/authorize")
        assert parse_qs(to.query)["redirect_uri"] == [f"{site.url}/app/auth/callback"]
    client = sign_in(site, owner, "supplier")
    assert client.get("/app/supplier").status_code == 200
    token = csrf_of(client, "/app/supplier")
    elsewhere = client.post(
        "/app/sign-out", data={"csrf": token}, headers={"origin": sites["unset"].url}
    )
    assert elsewhere.status_code == 403 and "another site" in elsewhere.text
    here = client.post("/app/sign-out", data={"csrf": token}, headers={"origin": site.url})
    assert here.status_code == 303 and here.headers["location"] == "/app/signed-out"
    # the other address of the same server works as well
    assert sign_in(sites["unset"], owner, "supplier").get("/app/supplier").status_code == 200


def test_without_public_url_the_provider_still_sends_codes_only_to_these_pages(
    sites: dict[str, Site],
) -> None:
    site = at_localhost(sites["unset"])
    with httpx.Client(base_url=site.url, follow_redirects=False, timeout=30) as client:
        form = client.get(client.get("/app/sign-in").headers["location"])
        fields = hidden_fields(form.text)
        for target in (
            "https://evil.example/app/auth/callback",
            f"{sites['unset'].url}/app/auth/callback",  # the same server, another origin
            f"{site.url}/elsewhere",
        ):
            asked = client.get(
                "/dev-issuer/authorize",
                params={**fields, "redirect_uri": target, "code_challenge_method": "S256"},
            )
            assert asked.status_code == 400, target
            posted = client.post(
                "/dev-issuer/authorize",
                data={**fields, "redirect_uri": target, "subject": "x", "roles": ["admin"]},
            )
            assert posted.status_code == 400, target


def test_with_public_url_another_address_is_explained(sites: dict[str, Site]) -> None:
    site = sites["set"]
    public = site.url
    stray = at_localhost(site).url
    # a form opened at another address than public_url: refused, saying which to use
    client = sign_in(site, site.owners[0], "supplier")
    token = csrf_of(client, "/app/supplier")
    refused = client.post(
        "/app/sign-out",
        data={"csrf": token},
        headers={"origin": stray, "host": stray.removeprefix("http://")},
    )
    assert refused.status_code == 403
    assert public in refused.text and stray in refused.text and "public_url" in refused.text
    # a sign-in begun there ends at public_url, where this browser has no sign-in state
    with httpx.Client(base_url=stray, follow_redirects=False, timeout=30) as browser:
        form = browser.get(browser.get("/app/sign-in").headers["location"])
        fields = hidden_fields(form.text)
        assert fields["redirect_uri"] == f"{public}/app/auth/callback"
        back = browser.post(
            "/dev-issuer/authorize",
            data={**fields, "subject": site.owners[0], "roles": ["supplier"]},
        )
        assert back.status_code == 303
    with httpx.Client(follow_redirects=False, timeout=30) as elsewhere:
        failed = elsewhere.get(back.headers["location"])
    assert failed.status_code == 400
    assert "Sign-in failed" in failed.text and public in failed.text
    assert "public_url" in failed.text
