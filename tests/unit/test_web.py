"""The browser interfaces' pieces without a server: catalogues, language negotiation,
security headers, sign-in limits and the scope check of calls to API routes."""

from __future__ import annotations

import asyncio
import re
import string
from importlib import resources
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from projections.api import commands, records, register, reports, subjects
from projections.api.access import Principal, Scope
from projections.api.problems import Forbidden
from projections.web import calls, i18n
from projections.web.security import SecurityHeaders, SignInLimit


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_language_has_every_english_text_with_the_same_fields() -> None:
    english = i18n.catalogue("en")
    assert len(english) > 100
    for language in i18n.LANGUAGES:
        texts = i18n.catalogue(language)
        assert set(texts) == set(english), language
        for key, text in texts.items():
            assert text.strip(), (language, key)
            assert _fields(text) == _fields(english[key]), (language, key)


def test_german_is_not_english() -> None:
    english, german = i18n.catalogue("en"), i18n.catalogue("de")
    same = [k for k in english if english[k] == german[k] and len(english[k]) > 12]
    assert len(same) < len(english) / 20, same


def test_every_literal_key_in_the_templates_is_in_the_catalogue() -> None:
    english = i18n.catalogue("en")
    folder = resources.files("projections.web") / "templates"
    used: set[str] = set()
    for sub in [folder, *[p for p in folder.iterdir() if p.is_dir()]]:
        for template in sub.iterdir():
            if template.name.endswith(".html"):
                used |= set(re.findall(r"""\bt\(\s*["']([a-z_.0-9]+)["']""", template.read_text()))
    literal = {k for k in used if not k.endswith((".", "_"))}  # not prefixes of built keys
    assert literal and literal <= set(english), literal - set(english)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("fr-FR,fr;q=0.9,de;q=0.5,en;q=0.4", "de"),
        ("fr, en;q=0.1", "en"),
        ("en;q=0.2, de;q=0.8", "de"),
        ("xx;q=abc, de;q=0", "en"),
        ("*", "en"),
    ],
)
def test_the_language_follows_the_browsers_preferences(header: str | None, expected: str) -> None:
    assert i18n.negotiate(header) == expected


def test_a_missing_text_falls_back_to_english_then_to_its_key() -> None:
    german = i18n.Translator("de")
    assert german("privacy.title") != i18n.Translator("en")("privacy.title")
    assert german("no.such.key") == "no.such.key"
    assert i18n.Translator("xx").language == "en"


def _app() -> TestClient:
    async def html(request: Any) -> HTMLResponse:
        return HTMLResponse("<p>page</p>")

    async def json(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    routes = [
        Route("/console/x", html),
        Route("/console/data", json),
        Route("/docs", html),
        Route("/v1/thing", json),
    ]
    return TestClient(SecurityHeaders(Starlette(routes=routes)))


def test_every_html_response_carries_a_content_security_policy() -> None:
    client = _app()
    page = client.get("/console/x")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "same-origin"
    docs = client.get("/docs").headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in docs and "frame-ancestors 'none'" in docs


def test_api_answers_are_left_alone_and_page_data_is_not_cached() -> None:
    client = _app()
    api = client.get("/v1/thing")
    assert "content-security-policy" not in api.headers and "cache-control" not in api.headers
    assert client.get("/console/data").headers["cache-control"] == "no-store"


def test_sign_in_failures_are_limited_per_client() -> None:
    limit = SignInLimit("3/minute")
    for _ in range(3):
        assert limit.allows("10.0.0.1")
        limit.failed("10.0.0.1")
    assert not limit.allows("10.0.0.1")
    assert 1 <= limit.retry_after("10.0.0.1") <= 61
    assert limit.allows("10.0.0.2")


READER = Principal("000000000001", "acme", frozenset({Scope.READER}))
ADMIN = Principal("000000000002", "acme", frozenset({Scope.ADMIN}))


def test_pages_call_routes_under_the_scopes_the_routes_declare() -> None:
    assert calls.route_scopes(commands.grant_consent) == {Scope.ADMIN}
    assert Scope.READER in calls.route_scopes(subjects.consents_by_ref)
    assert Scope.READER in calls.route_scopes(register.register)
    assert calls.allowed(records.purposes, READER)
    assert not calls.allowed(commands.request_erasure, READER)
    assert calls.allowed(commands.request_erasure, ADMIN)
    assert calls.route_scopes(reports.report_by_ref)


def test_a_call_beyond_the_keys_scope_is_refused_before_the_route_runs() -> None:
    # Without a context the route itself would fail otherwise: Forbidden means it never ran.
    with pytest.raises(Forbidden):
        asyncio.run(calls.call(commands.request_erasure, None, READER))  # type: ignore[arg-type]


def test_framing_origins_are_checked_when_the_settings_are_read() -> None:
    from ledger.process.settings import ConfigError, _frame_ancestors

    assert _frame_ancestors("https://app.example.com, https://*.acme.io:8443") == (
        "https://app.example.com",
        "https://*.acme.io:8443",
    )
    assert _frame_ancestors(None) == ()
    for bad in ("http://app.example.com", "https://a.example/path", "'none'", "*", "https://"):
        with pytest.raises(ConfigError):
            _frame_ancestors(bad)
