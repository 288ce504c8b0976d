"""Fixtures of the browser tests: the ledger served over TCP as a user serves it, and Debian's
Chromium driven by Playwright against it.

Rules these fixtures keep:

* **The real server.** ``ledger serve`` and ``ledger project`` run as subprocesses on a
  schema of their own, seeded once per session with the scripted history (tests/history.py)
  through a ``Ledger`` opened from the same settings; one API key per scope; topics of their
  own on the suite's broker (``ledger serve`` re-applies the ledger topic's erasures before it
  serves, as it does in production). ``serve_with`` starts one more server on the same
  database with a setting changed (a low sign-in limit, a two-second idle timeout), so the
  tests of those limits neither wait nor lock the other tests out.
* **Never a downloaded browser.** Chromium is ``$LEDGER_TEST_CHROMIUM`` or
  ``/usr/bin/chromium``, headless, with every background connection off; missing, it fails
  the test on CI and skips it loudly elsewhere (``require_service``).
* **Evidence kept.** ``shot`` saves a PNG of each page a journey visits to
  ``$LEDGER_TEST_ARTIFACTS/screenshots`` (default ``test-artifacts/`` at the repository
  root) as ``<test>-<nn>-<step>.png``; ``axe_check`` runs axe-core's WCAG 2 A/AA rules and
  fails on any serious or critical violation; a page that breaks its own Content-Security-
  Policy or throws a script error fails the test that opened it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Frame,
    Page,
    Playwright,
    sync_playwright,
)

from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import Settings, load
from projections.api import access
from projections.api.app import prepare
from tests import builders as b
from tests.browser.support import (
    PERSONAL,
    REFERENCES,
    Server,
    Site,
    ledger_command,
    start_server,
    stop,
)
from tests.conftest import _base_environ, _key, new_topics, own_schema, require_service
from tests.e2e.test_processes import Process
from tests.history import catch_up, scripted_history, subject_id

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCOPES = ("producer", "reader", "auditor", "admin")
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("serious", "critical")
# A key of the pages' catalogues (projections/web/locales/<lang>/<part>.json) shown as is.
UNTRANSLATED = re.compile(
    r"\b(?:audit|basis|common|console|dash|privacy|request|status)\.[a-z][a-z0-9_.]*[a-z0-9]\b"
)


def chromium_executable() -> str:
    path = os.environ.get("LEDGER_TEST_CHROMIUM") or CHROMIUM
    if not os.access(path, os.X_OK):
        require_service(
            "Chromium",
            f"{path} is missing: install Debian's browser (apt-get install chromium; "
            "scripts/test does it when run as root) or set LEDGER_TEST_CHROMIUM",
        )
    return path


def screenshots_dir() -> Path:
    root = Path(os.environ.get("LEDGER_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder = root / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- the served ledger ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def site_schema(database_url: str) -> Iterator[str]:
    """A schema for the session's site, dropped afterwards with the projections' schemas."""
    with own_schema(database_url) as name:
        yield name


@pytest.fixture(scope="session")
def site_env(
    database_url: str,
    site_schema: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """The ``LEDGER_*`` environment of the site's processes: keys, a checkpoint key, the
    suite's broker with topics no other test uses."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    names = new_topics(kafka_bootstrap)
    return {
        **clean,
        **_base_environ(database_url, site_schema, tmp_path_factory.mktemp("site")),
        "LEDGER_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LEDGER_TOPIC_INGEST": names.ingest,
        "LEDGER_TOPIC_REJECTED": names.rejected,
        "LEDGER_TOPIC_LEDGER": names.ledger,
        "LEDGER_CHECKPOINT_KEY": _key(),
        "LEDGER_LOG_FORMAT": "json",
    }


def _seed(settings: Settings) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The scripted history, subject reports allowed, views caught up, a key per scope."""
    ledger = open_ledger(settings)
    try:
        ledger.register_tenant(b.TENANT, "Acme")
        ledger.register_tenant("globex", "Globex")
        history = scripted_history(ledger)
        ledger.set_subject_reports(b.TENANT, allow=True)
        subjects = {ref: str(subject_id(ledger, ref)) for ref in REFERENCES}
    finally:
        ledger.close()
    reader = open_reader(settings)
    try:
        catch_up(settings, reader, sweep=True)
    finally:
        reader.close()
    prepare(settings)
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        tokens = {
            s: access.create_key(conn, settings.database_schema, b.TENANT, [s], "browser")[0]
            for s in SCOPES
        }
    return history, subjects, tokens


@pytest.fixture(scope="session")
def site(site_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """``ledger serve`` and ``ledger project`` over the seeded history, for the session."""
    history, subjects, tokens = _seed(load(site_env))
    logs = tmp_path_factory.mktemp("site-logs")
    projector = Process(ledger_command("project"), site_env, logs / "project.log")
    server: Server | None = None
    try:
        server = start_server(site_env, logs / "serve.log")
        yield Site(server.base, site_env, tokens, history, subjects)
    finally:
        if server is not None:
            stop(server.process)
        stop(projector)


@pytest.fixture
def serve_with(site: Site, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``serve_with(LEDGER_X="...")`` starts one more server on the site's database with those
    settings changed (a low sign-in limit, a short idle timeout), stopped after the test; its
    base URL. Its own process: its limits lock no other test out."""
    started: list[Server] = []

    def start(**settings: str) -> str:
        log = tmp_path / f"serve-{len(started)}.log"
        started.append(start_server({**site.env, **settings}, log))
        return started[-1].base

    yield start
    for server in started:
        stop(server.process)


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Per module, not per session: while it runs, Playwright's driver holds an event loop on
    the main thread, and the tests collected after the browser tests call asyncio.run()."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium per module: Debian's, never one Playwright downloads."""
    launched = playwright.chromium.launch(
        executable_path=chromium_executable(), headless=True, args=CHROMIUM_ARGS
    )
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: no cookies or storage from another test."""
    fresh = browser.new_context(locale="en-GB", timezone_id="UTC", accept_downloads=True)
    fresh.set_default_timeout(15_000)
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab that fails its test on a script error or a Content-Security-Policy violation."""
    opened = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(f"{opened.url}: {message.text}")

    def on_error(error: Error) -> None:
        problems.append(f"{opened.url}: {error.message}")

    def on_navigated(frame: Frame) -> None:
        problems.extend(f"{ref} in the address {frame.url}" for ref in PERSONAL if ref in frame.url)

    opened.on("console", on_console)
    opened.on("pageerror", on_error)
    opened.on("framenavigated", on_navigated)
    yield opened
    assert not problems, "the pages broke their own rules:\n" + "\n".join(problems)


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """``shot(page, step)`` saves the page as ``<test>-<nn>-<step>.png`` (numbered in order);
    this test's pictures from an earlier run are removed first."""
    folder = screenshots_dir()
    test = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    for old in folder.glob(f"{test}-*.png"):
        old.unlink()
    taken = [0]

    def save(page: Page, step: str) -> Path:
        taken[0] += 1
        path = folder / f"{test}-{taken[0]:02d}-{re.sub(r'[^A-Za-z0-9_-]+', '-', step)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


def _described(violation: dict[str, Any]) -> str:
    nodes = "; ".join(
        f"{', '.join(map(str, n['target']))} <{n.get('html', '')[:160]}>"
        for n in violation["nodes"]
    )
    return f"{violation['id']} ({violation['impact']}): {violation['help']} at {nodes}"


@pytest.fixture(scope="session")
def axe_check() -> Callable[[Page], None]:
    """``axe_check(page)`` fails listing every serious or critical WCAG 2 A/AA violation, and
    any catalogue key shown as it is (a text missing from the page's language)."""
    axe = Axe()
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]}

    def check(page: Page) -> None:
        found = axe.run(page, options=options).response["violations"]
        blocking = [_described(v) for v in found if v.get("impact") in BLOCKING]
        assert not blocking, f"accessibility violations on {page.url}:\n" + "\n".join(blocking)
        keys = sorted(set(UNTRANSLATED.findall(page.inner_text("body"))))
        assert not keys, f"{page.url} shows catalogue keys instead of texts: {keys}"

    return check
