"""Stand-ins for recipients' and processors' webhook endpoints: a local HTTP server that
verifies every request with the ``standardwebhooks`` library and can fail a path's first try."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receivers:
    """Stand-ins for the recipients' and processors' endpoints, one path each."""

    secrets: dict[str, str] = field(default_factory=dict)
    fail_first: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            Webhook(self.secrets[path]).verify(body, headers)
            verified = True
        except (WebhookVerificationError, KeyError):
            verified = False
        with self.lock:
            first = not any(r.path == path for r in self.received)
            self.received.append(Received(path, headers, body, verified))
        if not verified:
            return 401
        return 500 if first and path in self.fail_first else 200

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


class Handler(BaseHTTPRequestHandler):
    server: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        status = self.server.receivers.handle(self.path.strip("/"), dict(self.headers), body)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receivers() -> Iterator[tuple[Receivers, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.receivers = Receivers()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.receivers, f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
