"""What every browser-facing response carries, and the checks on every form post.

Rules this module keeps:

* **Every HTML response has a Content-Security-Policy.** The pages' policy allows nothing
  but the ledger's own origin for scripts, styles, images and form targets, no inline script
  or style, no framing (the privacy center only by the origins of
  ``LEDGER_PRIVACY_FRAME_ANCESTORS``, for tenants who embed it); the OpenAPI pages
  (``/docs``, ``/redoc``), which FastAPI builds from a CDN with an inline script, get a policy
  of their own naming exactly that.
* **Pages are not cached and leak no referrer.** ``Cache-Control: no-store`` and
  ``Referrer-Policy: same-origin`` on everything under ``/privacy/`` and ``/console/``: no
  other site learns a page's address, and our own form posts keep their ``Origin`` (under
  ``no-referrer`` browsers send ``Origin: null``, which the CSRF check must refuse).
* **A form post proves it came from our page.** Its ``csrf`` field equals the session's token
  (compared in constant time), and an ``Origin`` header, when the browser sends one, is our
  own origin.
* **Sign-in is rate limited per client** (``LEDGER_SIGNIN_LIMIT``, moving windows held in
  memory by each server process): over the limit, an attempt is refused before the key is
  looked at.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: "
    "https://fastapi.tiangolo.com; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_WEB_PREFIXES = ("/privacy", "/console")
# Routes that answer JSON, problem documents, PDF, CSV or metrics, never HTML (a unit test
# holds every /v1 route of the app to it).
_JSON_ONLY = ("/v1/", "/metrics", "/healthz", "/readyz")
_PAGE_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
]


def page_policy(frame_ancestors: tuple[str, ...] = ()) -> str:
    """The pages' policy, with the origins that may frame them (none: ``'none'``)."""
    if not frame_ancestors:
        return PAGE_POLICY
    allowed = " ".join(frame_ancestors)
    return PAGE_POLICY.replace("frame-ancestors 'none'", f"frame-ancestors {allowed}")


class SecurityHeaders:
    """ASGI middleware: adds the headers above at the start of each response; the API's own
    routes (``/v1/``, health, metrics), which never answer HTML, pass straight through.
    ``privacy_frame_ancestors`` (``LEDGER_PRIVACY_FRAME_ANCESTORS``) are the origins whose
    pages may frame the privacy center; every other page stays unframeable."""

    def __init__(self, app: ASGIApp, privacy_frame_ancestors: tuple[str, ...] = ()) -> None:
        self.app = app
        self._privacy_policy = page_policy(privacy_frame_ancestors).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_JSON_ONLY):
            await self.app(scope, receive, send)  # the purpose checks' path pays nothing
            return
        page = path.startswith(_WEB_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                html = any(
                    k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers
                )
                if html:
                    headers.append((b"content-security-policy", self._policy(path)))
                if page or html:
                    headers.extend(_PAGE_HEADERS)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _policy(self, path: str) -> bytes:
        if path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            return DOCS_POLICY.encode()
        if path.startswith("/privacy"):
            return self._privacy_policy
        return PAGE_POLICY.encode()


def own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def form_posted_here(request: Request, sent: str | None, expected: str) -> bool:
    """The CSRF check: the token matches and the origin, if sent, is ours."""
    origin = request.headers.get("origin")
    if origin is not None and origin != own_origin(request):
        return False
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())


class SignInLimit:
    """Failed sign-ins per client, in moving windows (``limits``)."""

    def __init__(self, spec: str) -> None:
        self._limits = parse_many(spec)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def allows(self, client: str) -> bool:
        return all(self._limiter.test(limit, "signin", client) for limit in self._limits)

    def failed(self, client: str) -> None:
        for limit in self._limits:
            self._limiter.hit(limit, "signin", client)

    def retry_after(self, client: str) -> int:
        """Seconds until the tightest window admits another attempt."""
        waits = []
        for limit in self._limits:
            stats = self._limiter.get_window_stats(limit, "signin", client)
            if stats.remaining == 0:
                waits.append(max(1, int(stats.reset_time - time.time()) + 1))
        return max(waits, default=1)
