"""Signing in to the console: the key checked as the API checks it, the session and its
cookie, the rate limit on failures, expiry and revocation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from ledger.process.settings import Settings
from projections.api import access
from tests.history import ledger, reader
from tests.integration.test_api import history, tokens
from tests.web_pages import client, csrf, sign_in

__all__ = ["history", "ledger", "reader", "tokens"]  # fixtures


@pytest.fixture
def web(settings_db_only: Settings, tokens: dict[str, str]) -> Iterator[TestClient]:
    with client(settings_db_only.with_overrides(signin_limit="3/minute")) as c:
        yield c


def test_a_key_signs_in_and_the_cookie_is_strict(web: TestClient, tokens: dict[str, str]) -> None:
    response = sign_in(web, tokens["reader"])
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-ledger-console=")
    for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert flag in cookie
    home = web.get("/console/")
    assert home.status_code == 200 and tokens["reader"].split("_")[1] in home.text
    assert tokens["reader"] not in home.text


def test_a_wrong_key_is_refused_and_failures_are_limited(
    web: TestClient, tokens: dict[str, str]
) -> None:
    for _ in range(3):
        assert sign_in(web, "lk_000000000000_" + "x" * 43).status_code == 401
    limited = sign_in(web, tokens["reader"])  # even the right key, once over the limit
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert web.get("/console/", follow_redirects=False).status_code == 303


def test_a_sign_in_without_the_forms_token_is_refused(
    web: TestClient, tokens: dict[str, str]
) -> None:
    response = web.post("/console/sign-in", data={"api_key": tokens["admin"], "csrf": "x"})
    assert response.status_code == 403
    assert (
        "set-cookie" not in response.headers
        or "ledger-console" not in response.headers["set-cookie"]
    )


def test_a_cross_origin_post_is_refused(web: TestClient, tokens: dict[str, str]) -> None:
    form = web.get("/console/sign-in")
    response = web.post(
        "/console/sign-in",
        data={"csrf": csrf(form.text), "api_key": tokens["admin"]},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403


def test_without_a_session_pages_send_the_browser_to_sign_in(web: TestClient) -> None:
    response = web.get("/console/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/console/sign-in")


def test_signing_out_ends_the_session(web: TestClient, tokens: dict[str, str]) -> None:
    sign_in(web, tokens["auditor"])
    home = web.get("/console/").text
    cookie = web.cookies.get("__Host-ledger-console")
    out = web.post("/console/sign-out", data={"csrf": csrf(home)}, follow_redirects=False)
    assert out.headers["location"] == "/console/sign-in"
    web.cookies.set("__Host-ledger-console", cookie or "")
    assert web.get("/console/", follow_redirects=False).status_code == 303


def test_an_idle_session_ends(settings_db_only: Settings, tokens: dict[str, str]) -> None:
    from datetime import timedelta

    with client(settings_db_only.with_overrides(web_session_idle=timedelta(seconds=1))) as web:
        sign_in(web, tokens["reader"])
        assert web.get("/console/", follow_redirects=False).status_code == 200
        time.sleep(1.5)
        assert web.get("/console/", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions(
    web: TestClient, tokens: dict[str, str], settings_db_only: Settings
) -> None:
    sign_in(web, tokens["admin"])
    assert web.get("/console/", follow_redirects=False).status_code == 200
    key_id = tokens["admin"].split("_")[1]
    with psycopg.connect(settings_db_only.require_database()) as conn:
        assert access.revoke_key(conn, settings_db_only.database_schema, key_id)
    time.sleep(access.DEFAULT_CACHE_TTL + 0.2)  # the API's key cache, which sessions share
    assert web.get("/console/", follow_redirects=False).status_code == 303


def test_the_session_table_holds_no_token(
    web: TestClient, tokens: dict[str, str], settings_db_only: Settings
) -> None:
    sign_in(web, tokens["auditor"])
    secret = tokens["auditor"].split("_", 2)[2]
    cookie = web.cookies.get("__Host-ledger-console")
    assert cookie
    with psycopg.connect(settings_db_only.require_database()) as conn:
        schema = settings_db_only.database_schema
        rows = conn.execute(f'SELECT s::text FROM "{schema}".web_sessions s').fetchall()
    assert len(rows) == 1
    assert secret not in rows[0][0] and cookie not in rows[0][0]


def test_no_api_route_answers_html_so_the_api_skips_the_page_headers(
    web: TestClient, tokens: dict[str, str]
) -> None:
    """``SecurityHeaders`` lets ``/v1/`` pass untouched (the purpose check's path pays
    nothing): that holds only while no API route can answer HTML."""
    document = web.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        assert path.startswith(("/v1/", "/healthz", "/readyz")), path
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                assert "text/html" not in response.get("content", {}), path
    api = web.get("/v1/purposes", headers={"Authorization": f"Bearer {tokens['reader']}"})
    assert api.status_code == 200 and "content-security-policy" not in api.headers
    assert "content-security-policy" in web.get("/console/sign-in").headers
