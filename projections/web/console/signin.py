"""Signing in to the console with one of the tenant's API keys, and out again.

Rules this module keeps:

* The key's token is posted once, checked exactly as the API checks a bearer token, and
  never stored: the session records the key's id, and every request re-reads the key, so a
  revoked key's sessions end.
* The sign-in form carries its own CSRF token (a cookie and a field that must match, since
  there is no session yet), and failed attempts are limited per client address
  (``LEDGER_SIGNIN_LIMIT``); over the limit the answer is 429 with ``Retry-After``.
* A failure says only that the key was not accepted; the log line names the key id, never
  the token.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from projections.api.problems import Unauthorized, Unavailable
from projections.web import auth
from projections.web.render import language_of, page
from projections.web.security import form_posted_here

router = APIRouter(prefix="/console", include_in_schema=False)
SIGNIN_COOKIE = "__Host-ledger-signin"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _form_page(
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "console/signin.html",
        session=None,
        status=status,
        area="console",
        signin_csrf=token,
        error=error,
        headers=headers,
    )
    response.set_cookie(
        SIGNIN_COOKIE, token, secure=True, httponly=True, samesite="strict", path="/", max_age=1800
    )
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    return _form_page(request)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    web = request.app.state.web
    client = _client(request)
    form = await request.form()
    sent = form.get("csrf")
    if not form_posted_here(
        request, sent if isinstance(sent, str) else None, request.cookies.get(SIGNIN_COOKIE) or "-"
    ):
        return _form_page(request, status=403, error="signin.expired")
    if not web.signin.allows(client):
        wait = web.signin.retry_after(client)
        return _form_page(
            request, status=429, error="signin.limited", headers={"Retry-After": str(wait)}
        )
    token = form.get("api_key")
    token = token.strip() if isinstance(token, str) else ""
    try:
        who = await request.app.state.api_keys.authenticate(f"Bearer {token}")
    except Unauthorized:
        web.signin.failed(client)
        return _form_page(request, status=401, error="signin.refused")
    except Unavailable:
        return _form_page(request, status=503, error="signin.unavailable")
    language = language_of(request, None)
    cookie, _ = await web.sessions.begin("console", who.tenant, who.key_id, language)
    response = RedirectResponse("/console/", status_code=303)
    auth.set_cookie(response, "console", cookie)
    response.delete_cookie(SIGNIN_COOKIE, path="/", secure=True, httponly=True)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, acting: auth.Console) -> Response:
    await auth.posted(request, acting)
    await request.app.state.web.sessions.end(acting.session)
    response = RedirectResponse("/console/sign-in", status_code=303)
    auth.clear_cookie(response, "console")
    return response
