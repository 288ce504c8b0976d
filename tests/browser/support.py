"""What the browser tests share besides fixtures: the served site, its JSON API as a tenant's
backend calls it, and the steps every console journey begins with."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Response

from ledger.servers.embedded import free_port
from tests.e2e.test_processes import Process
from tests.history import ALICE, BOB, CAROL, DAVE

REFERENCES = (ALICE, BOB, CAROL)  # the history's subjects that are not erased
PERSONAL = (*REFERENCES, DAVE)  # personal values no address and no reader's page may show
START_TIMEOUT_S = 60.0


def ledger_command(*args: str) -> list[str]:
    """``ledger <args>`` as a user runs it (this checkout's entry point)."""
    return [sys.executable, "-m", "ledger.cli.main", *args]


@dataclass
class Server:
    """One ``ledger serve`` on a loopback port."""

    base: str
    process: Process

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.process.log.read_text(errors="replace").splitlines()[-lines:])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback http)
            return bool(response.status == 200)
    except OSError:
        return False


def start_server(env: dict[str, str], log: Path) -> Server:
    """``ledger serve`` with ``env`` on a free port, once ``/healthz`` answers."""
    port = free_port()
    process = Process(
        [*ledger_command("serve"), "--host", "127.0.0.1", "--port", str(port)], env, log
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(f"{server.base}/healthz"):
        if process.proc.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"ledger serve did not start:\n{server.log_tail()}", pytrace=False)
        time.sleep(0.2)
    return server


def stop(process: Process) -> None:
    try:
        process.stop(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@dataclass
class Site:
    """The seeded ledger behind the main server: its keys (one per scope, tenant acme), the
    scripted history's event ids and the subject id of each reference."""

    base: str
    env: dict[str, str]
    tokens: dict[str, str]
    history: dict[str, str]
    subjects: dict[str, str]

    def call(self, scope: str, method: str, path: str, body: Any = None) -> Any:
        """The JSON API as the tenant's backend calls it; the answer's JSON (None if empty).
        Plain HTTP from the standard library: Playwright's own client would tie the site,
        which lives for the session, to the browser's event loop."""
        request = urllib.request.Request(  # noqa: S310 (the test's own loopback server)
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.tokens[scope]}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                content = response.read()
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read().decode()}") from None
        return json.loads(content) if content else None

    def wait_until(self, scope: str, path: str, body: Any, holds: Any, what: str) -> Any:
        """Asks ``path`` (POST with ``body``, or GET when ``body`` is None) until ``holds(answer)``:
        the projections follow the ledger a moment after a page recorded something."""
        deadline = time.monotonic() + 30
        while True:
            answer = self.call(scope, "GET" if body is None else "POST", path, body)
            if holds(answer):
                return answer
            assert time.monotonic() < deadline, f"{what}: last answer {answer}"
            time.sleep(0.2)


def follow(page: Page, selector: str) -> Response:
    """Clicks what ``selector`` names and waits until the page it leads to has loaded (after
    any redirect); that page's response."""
    with page.expect_navigation() as navigated:
        page.click(selector)
    response = navigated.value
    assert response is not None, f"clicking {selector} loaded no page"
    return response


def sign_in(page: Page, base: str, token: str) -> Response:
    """Signs the page's browser into the console with an API key, as a person would; the
    response of the page it lands on."""
    page.goto(f"{base}/console/sign-in")
    page.fill("#api_key", token)
    return follow(page, "main form button[type=submit]")


def no_personal_values(html: str, where: str) -> None:
    for ref in PERSONAL:
        assert ref not in html, f"{where} shows the personal reference {ref}"


def nav_links(page: Page) -> list[str]:
    """The console's own pages, as its navigation lists them."""
    hrefs = page.eval_on_selector_all(
        "header nav:not(.languages) a", "links => links.map(a => a.getAttribute('href'))"
    )
    return [h for h in hrefs if re.fullmatch(r"/console/[a-z-]*", h)]
