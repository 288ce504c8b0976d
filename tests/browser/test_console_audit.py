"""An auditor in the console, in a real browser: a replay as of an instant between two
recorded events, browsed for a subject and held against the API's own replay answer; and a
signed checkpoint verified from its row."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page
from typer.testing import CliRunner

from ledger.cli.main import app
from tests.browser.support import Site, follow, sign_in
from tests.history import BOB

pytestmark = pytest.mark.browser
Shot = Callable[[Page, str], Path]
Check = Callable[[Page], None]
REPLAY_READY = "ready"  # the API's terminal state of a replay that answers (replays.py)


def consents_shown(page: Page) -> dict[str, str]:
    rows = page.eval_on_selector_all(
        "#replay-consents tr[data-purpose]",
        "rows => rows.map(r => [r.dataset.purpose, r.dataset.state])",
    )
    return dict(rows)


def test_an_auditor_replays_an_instant_and_browses_a_subject(
    site: Site, page: Page, shot: Shot, axe_check: Check
) -> None:
    # The instant: after the history, a second before BOB gives his consent again.
    as_of = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.1)
    bob = {"subject_ref": BOB, "purpose": "newsletter", "consent_text_version": "2"}
    site.call("admin", "POST", "/v1/subject/consent-grants", bob)

    sign_in(page, site.base, site.tokens["auditor"])
    follow(page, "header nav a[href='/console/replays']")
    page.fill("#as_of", as_of.strftime("%Y-%m-%dT%H:%M:%S"))  # datetime-local, UTC
    shot(page, "replays")
    axe_check(page)
    follow(page, "#start-replay button[type=submit]")
    replay_id = page.get_attribute("#replay", "data-replay-id")
    assert replay_id and page.url == f"{site.base}/console/replays/{replay_id}"
    page.wait_for_selector(f'#replay-state[data-state="{REPLAY_READY}"]', timeout=60_000)
    shot(page, "replay-ready")
    axe_check(page)

    subject = site.subjects[BOB]
    page.fill("#subject_id", subject)
    follow(page, "#browse-replay button[type=submit]")
    page.wait_for_selector("#replay-answers")
    then = site.call("auditor", "GET", f"/v1/replays/{replay_id}/subjects/{subject}/consents")
    assert consents_shown(page) == {c["purpose"]: c["state"] for c in then["consents"]}
    assert consents_shown(page)["newsletter"] == "withdrawn"  # as of the instant, not today
    site.wait_until(  # while today the consent is given again
        "auditor",
        "/v1/subject/consents",
        {"subject_ref": BOB},
        lambda a: {c["purpose"]: c["state"] for c in a["consents"]}["newsletter"] == "granted",
        "BOB's consent given again, in the live view",
    )
    shot(page, "replay-subject")
    axe_check(page)


def test_an_auditor_verifies_a_signed_checkpoint(
    site: Site, page: Page, shot: Shot, axe_check: Check
) -> None:
    signed = CliRunner().invoke(app, ["audit", "checkpoint"], env=site.env)
    assert signed.exit_code == 0, signed.output
    newest = site.call("auditor", "GET", "/v1/checkpoints?limit=1")[0]

    sign_in(page, site.base, site.tokens["auditor"])
    follow(page, "header nav a[href='/console/checkpoints']")
    assert page.url == f"{site.base}/console/checkpoints"
    row = page.locator(f'tr[data-sequence="{newest["sequence"]}"]')
    assert row.locator("[data-state]").get_attribute("data-state") == "unchecked"
    shot(page, "checkpoints")
    axe_check(page)

    follow(page, f'tr[data-sequence="{newest["sequence"]}"] button')
    verified = page.locator("#verification")
    assert verified.get_attribute("data-verified") == "true"
    assert verified.get_attribute("data-sequence") == str(newest["sequence"])
    state = page.locator(f'tr[data-sequence="{newest["sequence"]}"] [data-state]')
    assert state.get_attribute("data-state") == "verified"
    shot(page, "verified")
    axe_check(page)
