"""The privacy center framed by a tenant's own page (``LEDGER_PRIVACY_FRAME_ANCESTORS``), in
a real browser: the tenant's page on another site embeds the one-time link, the person
withdraws a consent inside the frame, and the ledger records it; a site not named may not
frame it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

from projections.web.i18n import catalogue
from tests.browser.support import Site
from tests.history import BOB

pytestmark = pytest.mark.browser
Shot = Callable[[Page, str], Path]
EN = catalogue("en")


class TenantSite:
    """A tenant's signed-in page on ``http://localhost:<port>`` (another site than the
    ledger's ``127.0.0.1``) that frames whatever address it is given."""

    def __init__(self) -> None:
        self.frame_src = "about:blank"
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (
                    "<!doctype html><html lang=en><title>Your account</title>"
                    "<h1>Your account</h1>"
                    f'<iframe title="Privacy settings" src="{site.frame_src}" '
                    'width="900" height="1400"></iframe>'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://localhost:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tenant_site() -> Iterator[TenantSite]:
    site = TenantSite()
    yield site
    site.close()


def test_a_tenant_frames_the_privacy_center_and_a_withdrawal_inside_is_recorded(
    site: Site,
    serve_with: Callable[..., str],
    tenant_site: TenantSite,
    page: Page,
    shot: Shot,
) -> None:
    base = serve_with(LEDGER_PRIVACY_FRAME_ANCESTORS=tenant_site.origin)
    link = site.call("admin", "POST", "/v1/privacy-center/links", {"subject_ref": BOB})
    tenant_site.frame_src = base + link["path"]
    page.goto(tenant_site.origin + "/account")
    frame = page.frame_locator("iframe")
    granted = frame.locator("article[data-purpose=newsletter] [data-state]")
    bob = site.subjects[BOB]
    state = site.call("reader", "GET", f"/v1/subjects/{bob}/consents")
    newsletter = next(c for c in state["consents"] if c["purpose"] == "newsletter")
    assert granted.get_attribute("data-state") == newsletter["state"]
    shot(page, "framed")

    label = EN["privacy.grant"].format(purpose="newsletter")
    if newsletter["state"] == "granted":
        label = EN["privacy.withdraw"].format(purpose="newsletter")
    frame.locator(f"article[data-purpose=newsletter] button:text-is('{label}')").click()
    event_id = frame.locator("#notice code").inner_text().strip()
    shot(page, "changed-in-frame")
    changed = site.wait_until(
        "reader",
        f"/v1/subjects/{bob}/consents",
        None,
        lambda a: any(c["event_id"] == event_id for c in a["consents"]),
        "the change made inside the frame",
    )
    recorded = next(c for c in changed["consents"] if c["purpose"] == "newsletter")
    assert recorded["source"] == "privacy-center" and recorded["state"] != newsletter["state"]
    assert granted.get_attribute("data-state") == recorded["state"]  # the page shows it


def test_a_site_not_named_may_not_frame_it(
    site: Site, tenant_site: TenantSite, context: BrowserContext, shot: Shot
) -> None:
    link = site.call("admin", "POST", "/v1/privacy-center/links", {"subject_ref": BOB})
    tenant_site.frame_src = site.base + link["path"]  # the main server names no framing site
    page = context.new_page()  # not the ``page`` fixture: this page breaks a CSP on purpose
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "frame-ancestors" in m.text else None)
    page.goto(tenant_site.origin + "/account")
    page.wait_for_timeout(500)
    assert any("'none'" in text for text in refused), refused
    assert all(f.query_selector("article[data-purpose]") is None for f in page.frames)
    shot(page, "refused")
