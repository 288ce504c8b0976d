"""The privacy center over HTTP (pages as a browser gets them): links, sessions, consent
changes recorded as ledger events, reports and requests, and what the pages refuse."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.application.service import Ledger, LedgerReader
from ledger.process.settings import Settings
from projections.api.app import create_app
from tests.history import ALICE, catch_up, ledger, reader
from tests.integration.test_api import call, history, tokens

__all__ = ["history", "ledger", "reader", "tokens"]  # fixtures


@pytest.fixture
def web(settings_db_only: Settings, tokens: dict[str, str]) -> Iterator[TestClient]:
    app = create_app(settings_db_only)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        yield client


def link(web: TestClient, token: str, ref: str = ALICE, **extra: Any) -> str:
    response = call(web, token, "POST", "/v1/privacy-center/links", {"subject_ref": ref, **extra})
    assert response.status_code == 201, response.text
    path: str = response.json()["path"]
    assert ref not in response.text.replace(f'"{ref}"', "")
    return path


def enter(web: TestClient, token: str, ref: str = ALICE, **extra: Any) -> str:
    response = web.get(link(web, token, ref, **extra), follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/privacy/"
    page = web.get("/privacy/")
    assert page.status_code == 200, page.text
    return page.text


def csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match
    return match[1]


def test_a_link_opens_the_privacy_center_once(web: TestClient, tokens: dict[str, str]) -> None:
    path = link(web, tokens["admin"])
    assert "alice" not in path
    first = web.get(path, follow_redirects=False)
    assert first.status_code == 303
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("__Host-ledger-privacy=") and "Secure" in cookie
    assert "HttpOnly" in cookie and "Path=/" in cookie
    web.cookies.clear()
    again = web.get(path, follow_redirects=False)
    assert again.status_code == 401 and "expired" in again.text.lower()


def test_only_admin_keys_create_links(web: TestClient, tokens: dict[str, str]) -> None:
    for scope in ("producer", "reader", "auditor"):
        response = call(
            web, tokens[scope], "POST", "/v1/privacy-center/links", {"subject_ref": ALICE}
        )
        assert response.status_code == 403


def test_withdrawing_a_consent_records_a_privacy_center_event(
    web: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    html = enter(web, tokens["admin"])
    assert 'data-purpose="newsletter"' in html
    response = web.post(
        "/privacy/consents",
        data={"csrf": csrf(html), "purpose": "newsletter", "decision": "withdraw"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    catch_up(settings_db_only, reader)
    page = web.get(response.headers["location"]).text
    event_id = re.search(r"<code>([^<]+)</code>", page.split('id="notice"')[1])[1]
    state = call(web, tokens["reader"], "POST", "/v1/subject/consents", {"subject_ref": ALICE})
    newsletter = next(c for c in state.json()["consents"] if c["purpose"] == "newsletter")
    assert newsletter["state"] == "withdrawn"
    assert newsletter["event_id"] == event_id and newsletter["source"] == "privacy-center"


def test_a_post_without_the_sessions_token_is_refused(
    web: TestClient, tokens: dict[str, str], ledger: Ledger
) -> None:
    enter(web, tokens["admin"])
    before = len(ledger.store.select_notifications(1, 100_000))
    response = web.post(
        "/privacy/consents",
        data={"csrf": "forged", "purpose": "newsletter", "decision": "withdraw"},
    )
    assert response.status_code == 403
    assert len(ledger.store.select_notifications(1, 100_000)) == before


def test_pages_carry_a_strict_content_security_policy(
    web: TestClient, tokens: dict[str, str]
) -> None:
    enter(web, tokens["admin"])
    response = web.get("/privacy/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store"
    assert ALICE not in response.text
