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
from projections.web import privacy
from tests.history import ALICE, catch_up, ledger, reader, subject_id
from tests.integration.test_api import call, history, tokens
from tests.web_pages import client, csrf

__all__ = ["history", "ledger", "reader", "tokens"]  # fixtures


@pytest.fixture
def web(
    settings_db_only: Settings, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    # No projection runs here (the tests catch up by hand): a post need not wait for views.
    monkeypatch.setattr(privacy, "SHOWN_WITHIN", 0.0)
    with client(settings_db_only) as web:
        yield web


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


def test_required_and_non_consent_purposes_are_explained_not_toggled(
    web: TestClient, tokens: dict[str, str]
) -> None:
    html = enter(web, tokens["admin"])
    terms = html.split('data-purpose="terms"')[1].split("</article>")[0]
    billing = html.split('data-purpose="billing"')[1].split("</article>")[0]
    newsletter = html.split('data-purpose="newsletter"')[1].split("</article>")[0]
    assert "/privacy/consents" not in terms and "required" in terms
    assert "/privacy/consents" not in billing and "the contract with you" in billing
    assert 'value="withdraw"' in newsletter and 'data-state="granted"' in newsletter


def test_a_required_consent_cannot_be_withdrawn_by_a_forged_form(
    web: TestClient, tokens: dict[str, str], ledger: Ledger
) -> None:
    html = enter(web, tokens["admin"])
    before = len(ledger.store.select_notifications(1, 100_000))
    form = {"csrf": csrf(html), "purpose": "terms", "decision": "withdraw"}
    assert web.post("/privacy/consents", data=form).status_code == 409
    assert len(ledger.store.select_notifications(1, 100_000)) == before


def test_the_link_chooses_the_language(web: TestClient, tokens: dict[str, str]) -> None:
    html = enter(web, tokens["admin"], language="de")
    assert '<html lang="de">' in html and "Ihre Datenschutzeinstellungen" in html
    english = web.get("/privacy/?lang=en").text
    assert '<html lang="en">' in english
    assert '<html lang="en">' in web.get("/privacy/").text  # the choice is kept


def test_a_new_person_can_grant_a_consent(
    web: TestClient, tokens: dict[str, str], reader: LedgerReader, settings_db_only: Settings
) -> None:
    html = enter(web, tokens["admin"], "erin@example.com")
    assert 'data-state="never"' in html
    form = {"csrf": csrf(html), "purpose": "newsletter", "decision": "grant"}
    assert web.post("/privacy/consents", data=form, follow_redirects=False).status_code == 303
    catch_up(settings_db_only, reader)
    body = {"subject_ref": "erin@example.com"}
    state = call(web, tokens["auditor"], "POST", "/v1/subject/consents", body).json()
    newsletter = next(c for c in state["consents"] if c["purpose"] == "newsletter")
    assert (newsletter["state"], newsletter["consent_text_version"]) == ("granted", "2")
    assert newsletter["source"] == "privacy-center" and newsletter["user_agent"]


def test_the_report_downloads_once_the_tenant_allows_it(
    web: TestClient, tokens: dict[str, str], ledger: Ledger
) -> None:
    html = enter(web, tokens["admin"])
    refused = web.post("/privacy/report", data={"csrf": csrf(html), "format": "pdf"})
    assert "not enabled downloads" in refused.text
    assert ledger.set_subject_reports("acme", allow=True)
    pdf = web.post("/privacy/report", data={"csrf": csrf(html), "format": "pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-disposition"].startswith("attachment")
    report = web.post("/privacy/report", data={"csrf": csrf(html), "format": "json"}).json()
    assert report["subject_id"] == str(subject_id(ledger, ALICE))
    assert report["requester"]["requested_by"] == "subject"


def test_requests_are_recorded_and_erasure_needs_a_confirmation(
    web: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    html, alice = enter(web, tokens["admin"]), subject_id(ledger, ALICE)
    token = csrf(html)
    access = {"csrf": token, "kind": "ACCESS", "details": "everything please"}
    assert web.post("/privacy/requests", data=access, follow_redirects=False).status_code == 303
    unconfirmed = web.post("/privacy/requests", data={"csrf": token, "kind": "ERASURE"})
    assert "tick the box" in unconfirmed.text
    catch_up(settings_db_only, reader)
    register = call(web, tokens["reader"], "GET", "/v1/requests").json()["requests"]
    [opened] = [r for r in register if r["kind"] == "ACCESS"]
    assert (opened["kind"], opened["channel"], opened["identity_verified"]) == (
        "ACCESS",
        "privacy-center",
        True,
    )
    assert "Access: a copy of my data" in web.get("/privacy/").text
    erase = {"csrf": token, "kind": "ERASURE", "confirm": "yes"}
    assert web.post("/privacy/requests", data=erase, follow_redirects=False).status_code == 303
    catch_up(settings_db_only, reader)
    assert "Your data is erased" in web.get("/privacy/").text
    status = call(web, tokens["reader"], "GET", f"/v1/subjects/{alice}/erasure-status")
    assert status.json()["key_state"] == "shredded"


def test_signing_out_ends_the_session(web: TestClient, tokens: dict[str, str]) -> None:
    html = enter(web, tokens["admin"])
    out = web.post("/privacy/sign-out", data={"csrf": csrf(html)})
    assert out.status_code == 200
    assert web.get("/privacy/").status_code == 401


def test_the_session_table_holds_no_reference_in_clear(
    web: TestClient, tokens: dict[str, str], settings_db_only: Settings
) -> None:
    import psycopg

    link(web, tokens["admin"])
    enter(web, tokens["admin"])
    with psycopg.connect(settings_db_only.require_database()) as conn:
        schema = settings_db_only.database_schema
        rows = conn.execute(
            f'SELECT s::text FROM "{schema}".web_sessions s '
            f'UNION ALL SELECT l::text FROM "{schema}".web_links l'
        ).fetchall()
    assert len(rows) >= 2
    for (row,) in rows:
        assert "alice" not in row and ALICE.encode().hex() not in row


def test_a_tenant_may_frame_the_privacy_center_and_nothing_else(
    settings_db_only: Settings, tokens: dict[str, str]
) -> None:
    framing = settings_db_only.with_overrides(privacy_frame_ancestors=("https://app.example.com",))
    with client(framing) as web:
        entered = web.get(link(web, tokens["admin"]), follow_redirects=False)
        assert entered.status_code == 303, entered.text[:500]
        cookie = entered.headers["set-cookie"]
        for flag in ("SameSite=None", "Partitioned", "Secure", "HttpOnly", "Path=/"):
            assert flag in cookie
        inside = web.get("/privacy/")
        assert inside.status_code == 200
        policy = inside.headers["content-security-policy"]
        assert "frame-ancestors https://app.example.com;" in policy
        console = web.get("/console/sign-in").headers["content-security-policy"]
        assert "frame-ancestors 'none'" in console
