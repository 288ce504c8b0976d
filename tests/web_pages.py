"""What the tests of the browser pages over HTTP share: a client that keeps the ``Secure``
cookies, the CSRF token of a page's form, and signing in to the console."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from ledger.process.settings import Settings
from projections.api.app import create_app


def client(settings: Settings) -> TestClient:
    """The API app behind an ``https`` base URL, so the ``__Host-`` cookies are kept."""
    return TestClient(
        create_app(settings), base_url="https://testserver", raise_server_exceptions=False
    )


def csrf(html: str) -> str:
    """The ``csrf`` hidden field of the page's first form."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match[1]


def sign_in(web: TestClient, token: str) -> Any:
    """Posts the console's sign-in form with ``token`` as a person would; its answer."""
    form = web.get("/console/sign-in")
    assert form.status_code == 200
    return web.post(
        "/console/sign-in", data={"csrf": csrf(form.text), "api_key": token}, follow_redirects=False
    )


def signed_in(web: TestClient, token: str) -> None:
    response = sign_in(web, token)
    assert response.status_code == 303, response.text
