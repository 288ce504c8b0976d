"""A data subject in the privacy center, in a real browser: the tenant's link, a consent
withdrawn by clicking and recorded as the ledger's event, the PDF of their data, the language
switch, a link used twice and signing out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from playwright.sync_api import BrowserContext, Page

from projections.web.i18n import catalogue
from tests.browser.support import Site, follow
from tests.history import ALICE, CAROL

pytestmark = pytest.mark.browser
Shot = Callable[[Page, str], Path]
Check = Callable[[Page], None]
EN, DE = catalogue("en"), catalogue("de")


def state_of(page: Page, purpose: str) -> str | None:
    return page.get_attribute(f"article[data-purpose={purpose}] [data-state]", "data-state")


def heading(page: Page) -> str:
    return page.inner_text("main h1").strip()


def expired(page: Page) -> bool:
    texts = catalogue(page.get_attribute("html", "lang") or "en")
    return heading(page) == texts["privacy.expired_title"]


def pdf_text(path: Path) -> str:
    document = pdfium.PdfDocument(path)
    try:
        return "\n".join(p.get_textpage().get_text_range() for p in document)
    finally:
        document.close()


def withdraw_newsletter(page: Page, site: Site) -> str:
    """Clicks the newsletter's withdraw button; the event id the confirmation names."""
    label = EN["privacy.withdraw"].format(purpose="newsletter")
    follow(page, f"article[data-purpose=newsletter] button:text-is('{label}')")
    assert page.url.startswith(f"{site.base}/privacy/?")
    return page.inner_text("#notice code").strip()


def test_a_subject_withdraws_a_consent_and_downloads_their_data(
    site: Site, context: BrowserContext, page: Page, shot: Shot, axe_check: Check
) -> None:
    link = site.call("admin", "POST", "/v1/privacy-center/links", {"subject_ref": ALICE})
    assert ALICE not in link["url"]
    opened = page.goto(link["url"])
    assert opened is not None and opened.status == 200
    assert page.url == f"{site.base}/privacy/"  # the code is gone from the address
    assert state_of(page, "newsletter") == "granted" and state_of(page, "terms") == "granted"
    shot(page, "overview")
    axe_check(page)

    event_id = withdraw_newsletter(page, site)
    assert ALICE not in page.url
    shot(page, "withdrawn")
    axe_check(page)

    recorded = site.wait_until(
        "reader",
        "/v1/subject/consents",
        {"subject_ref": ALICE},
        lambda a: any(c["event_id"] == event_id for c in a["consents"]),
        "the withdrawal the page confirmed, in the API's answer",
    )
    newsletter = next(c for c in recorded["consents"] if c["purpose"] == "newsletter")
    assert newsletter["state"] == "withdrawn" and newsletter["source"] == "privacy-center"
    page.goto(f"{site.base}/privacy/")
    assert state_of(page, "newsletter") == "withdrawn"
    shot(page, "overview-withdrawn")

    with page.expect_download() as caught:
        page.click("#download-pdf")
    pdf = Path(caught.value.path())
    assert pdf.read_bytes().startswith(b"%PDF")
    text = pdf_text(pdf)
    assert "newsletter — withdrawn" in text  # the report's heading of the purpose's history
    assert event_id in text.replace("\r", "").replace("\n", "")  # a wrapped table cell

    follow(page, "header nav.languages a[hreflang=de]")
    assert page.get_attribute("html", "lang") == "de"
    assert heading(page) == DE["privacy.title"]
    shot(page, "german")
    axe_check(page)

    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["__Host-ledger-privacy"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Lax"
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0


def test_a_link_works_once_and_signing_out_ends_the_session(
    site: Site, page: Page, shot: Shot, axe_check: Check
) -> None:
    link = site.call("admin", "POST", "/v1/privacy-center/links", {"subject_ref": ALICE})
    page.goto(link["url"])
    assert heading(page) == EN["privacy.title"]

    again = page.goto(link["url"])
    assert again is not None and again.status == 401 and expired(page)
    shot(page, "link-used-twice")
    axe_check(page)

    page.goto(f"{site.base}/privacy/")  # the session the first visit opened still holds
    assert heading(page) == EN["privacy.title"]
    follow(page, f"header form button:text-is('{EN['privacy.sign_out']}')")
    assert heading(page) == EN["privacy.signed_out_title"]
    shot(page, "signed-out")
    axe_check(page)

    back = page.go_back()
    assert back is not None and back.status == 401 and expired(page)
    reloaded = page.goto(f"{site.base}/privacy/")
    assert reloaded is not None and reloaded.status == 401 and expired(page)
    shot(page, "after-sign-out")


def test_a_person_using_only_the_keyboard_gives_a_consent(
    site: Site, page: Page, shot: Shot
) -> None:
    """Tab from the top of the page to the newsletter's button and press Enter: every control
    is reachable in order, its focus visible, and the ledger records the grant."""
    link = site.call("admin", "POST", "/v1/privacy-center/links", {"subject_ref": CAROL})
    page.goto(link["url"])
    label = EN["privacy.grant"].format(purpose="newsletter")
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        if focused == label:
            break
    else:
        pytest.fail(f"{label!r} was not reached with the Tab key")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")  # the focus can be seen
    shot(page, "focused")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    event_id = page.inner_text("#notice code").strip()
    recorded = site.wait_until(
        "reader",
        "/v1/subject/consents",
        {"subject_ref": CAROL},
        lambda a: any(c["event_id"] == event_id for c in a["consents"]),
        "the grant made with the keyboard",
    )
    newsletter = next(c for c in recorded["consents"] if c["purpose"] == "newsletter")
    assert newsletter["state"] == "granted" and newsletter["source"] == "privacy-center"
    assert state_of(page, "newsletter") == "granted"
