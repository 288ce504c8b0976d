"""The console in a real browser: signing in (refusals, the rate limit, the session cookie,
idle expiry, signing out), staff finding an overdue request, and every page of the
navigation for an auditor and a reader."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

from projections.web.i18n import catalogue
from tests.browser.support import Site, follow, nav_links, no_personal_values, sign_in
from tests.history import ALICE, days_ago

pytestmark = pytest.mark.browser
Shot = Callable[[Page, str], Path]
Check = Callable[[Page], None]
EN = catalogue("en")
WRONG_KEY = "lk_" + "0" * 40


def submit_key(page: Page, base: str, token: str) -> int:
    """Posts the sign-in form with ``token``; the status of the answer to that post (303 when
    it signed in, then the browser is on the page it was sent to)."""
    with page.expect_response(
        lambda r: r.url == f"{base}/console/sign-in" and r.request.method == "POST"
    ) as answered:
        sign_in(page, base, token)
    return answered.value.status


def notice(page: Page) -> str:
    return page.inner_text("#notice").strip()


def test_sign_in_refuses_wrong_keys_then_limits_attempts(
    serve_with: Callable[..., str], site: Site, page: Page, shot: Shot, axe_check: Check
) -> None:
    base = serve_with(LEDGER_SIGNIN_LIMIT="3/minute")
    page.goto(f"{base}/console/sign-in")
    shot(page, "sign-in")
    axe_check(page)
    for _ in range(3):
        assert submit_key(page, base, WRONG_KEY) == 401
        assert notice(page) == EN["console.signin.refused"]
    shot(page, "refused")
    axe_check(page)

    assert submit_key(page, base, WRONG_KEY) == 429
    assert notice(page) == EN["console.signin.limited"]
    assert submit_key(page, base, site.tokens["reader"]) == 429  # even the right key waits
    assert page.url == f"{base}/console/sign-in"
    shot(page, "limited")
    axe_check(page)


def test_staff_sign_in_with_a_strict_cookie_and_sign_out(
    site: Site, context: BrowserContext, page: Page, shot: Shot, axe_check: Check
) -> None:
    token = site.tokens["reader"]
    assert submit_key(page, site.base, token) == 303
    assert page.url == f"{site.base}/console/"
    shot(page, "signed-in")
    axe_check(page)

    cookie = next(c for c in context.cookies() if c["name"] == "__Host-ledger-console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/" and token not in cookie["value"]
    assert token not in page.url and token not in page.content()
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0

    follow(page, f"header form button:text-is('{EN['console.sign_out']}')")
    assert page.url == f"{site.base}/console/sign-in"
    assert not [c for c in context.cookies() if c["name"] == "__Host-ledger-console"]
    page.goto(f"{site.base}/console/")
    assert page.url == f"{site.base}/console/sign-in"  # the session is over
    shot(page, "signed-out")


def test_an_idle_session_is_sent_to_sign_in_again(
    serve_with: Callable[..., str], site: Site, page: Page, shot: Shot
) -> None:
    base = serve_with(LEDGER_WEB_SESSION_IDLE="2s")
    assert submit_key(page, base, site.tokens["reader"]) == 303
    assert page.url == f"{base}/console/"
    time.sleep(3)
    page.reload()
    assert page.url == f"{base}/console/sign-in"
    shot(page, "idled-out")


def test_staff_find_an_overdue_request(
    site: Site, page: Page, shot: Shot, axe_check: Check
) -> None:
    request_id = f"overdue-{uuid.uuid4().hex[:8]}"
    site.call(
        "admin",
        "POST",
        "/v1/subject/requests",
        {
            "subject_ref": ALICE,
            "kind": "ACCESS",
            "channel": "email",
            "received_at": (days_ago(40) - timedelta(minutes=1)).isoformat(),
            "event_id": request_id,
        },
    )
    listed = site.wait_until(
        "reader",
        "/v1/requests?state=overdue",
        None,
        lambda a: any(r["request_id"] == request_id for r in a["requests"]),
        "the request in the overdue register",
    )

    assert submit_key(page, site.base, site.tokens["reader"]) == 303
    follow(page, "header nav a[href='/console/requests']")
    assert page.url == f"{site.base}/console/requests"
    shot(page, "requests")
    page.select_option("#state", "overdue")
    follow(page, "form:has(#state) button[type=submit]")
    assert page.url.startswith(f"{site.base}/console/requests?state=overdue")
    row = page.locator(f'tr[data-request-id="{request_id}"]')
    assert row.locator(".state.overdue").count() == 1
    shown = page.eval_on_selector_all(
        "tr[data-request-id]", "rows => rows.map(r => r.dataset.requestId)"
    )
    assert sorted(shown) == sorted(r["request_id"] for r in listed["requests"])
    no_personal_values(page.content(), "the reader's register")
    shot(page, "overdue")
    axe_check(page)


@pytest.mark.parametrize("scope", ["auditor", "reader"])
def test_every_console_page_opens_accessibly(
    scope: str, site: Site, page: Page, shot: Shot, axe_check: Check
) -> None:
    assert submit_key(page, site.base, site.tokens[scope]) == 303
    pages = nav_links(page)
    assert len(pages) >= 5, pages
    for path in pages:
        answer = page.goto(f"{site.base}{path}")
        assert answer is not None
        status = answer.status
        denied = page.locator("#scope-denied").count() == 1  # a page the scope may not see
        assert status < 400 or (status == 403 and denied), f"{path}: {status}"
        if scope == "reader":
            no_personal_values(page.content(), f"{path} for a reader")
        assert page.evaluate("localStorage.length + sessionStorage.length") == 0
        shot(page, path.strip("/").replace("/", "-") or "console")
        axe_check(page)
