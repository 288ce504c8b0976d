"""Who a browser request acts as: the session behind its cookie, and that session's key.

Cookies are ``__Host-`` prefixed (``Secure``, ``Path=/``, no ``Domain``), ``HttpOnly``, and
end with the browser; the console's is ``SameSite=Strict``, the privacy center's ``Lax`` (a
person arrives from the tenant's site, a cross-site navigation), or ``SameSite=None;
Partitioned`` where tenants embed it (``set_cookie``). Browsers treat
``http://localhost`` and ``127.0.0.1`` as secure, so ``ledger dev`` works over plain HTTP;
anywhere else the interfaces need HTTPS (behind a proxy, ``ledger serve`` must see the
``https`` scheme: set ``FORWARDED_ALLOW_IPS`` to the proxy's address).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Request, Response

from projections.api.access import Principal, Scope
from projections.api.context import ApiContext
from projections.api.problems import Problem
from projections.web import i18n
from projections.web.security import form_posted_here
from projections.web.sessions import Kind, Session, Sessions

COOKIES: dict[Kind, str] = {
    "console": "__Host-ledger-console",
    "privacy": "__Host-ledger-privacy",
}
_SAME_SITE: dict[Kind, str] = {"console": "strict", "privacy": "lax"}


class SignInNeeded(Problem):
    """No live session: the console sends the browser to sign in, the privacy center says
    the link has expired."""

    def __init__(self, kind: Kind) -> None:
        super().__init__(401, f"no live {kind} session")
        self.kind = kind


@dataclass(frozen=True)
class Acting:
    """A live session and the key it acts as."""

    session: Session
    who: Principal
    ctx: ApiContext

    @property
    def reader(self) -> Principal:
        """The key narrowed to reading without personal fields: what the privacy center
        reads a subject's state with."""
        return Principal(self.who.key_id, self.who.tenant, frozenset({Scope.READER}))

    @property
    def portal(self) -> Principal:
        """The key narrowed to what a tenant's portal may ask on the subject's behalf (the
        ``producer`` scope): the privacy center asks for the subject's own report with it, so
        the report is recorded as the subject's request and the tenant's policy applies."""
        return Principal(self.who.key_id, self.who.tenant, frozenset({Scope.PRODUCER}))


def set_cookie(response: Response, kind: Kind, token: str, *, framed: bool = False) -> None:
    """``framed``: the privacy center may be embedded in a tenant's page
    (``LEDGER_PRIVACY_FRAME_ANCESTORS``), where a browser sends only a ``SameSite=None``
    cookie, which is then ``Partitioned`` (CHIPS): kept per embedding site, never sent to
    the ledger from any other site."""
    if framed:
        # Written by hand: Python's http.cookies knows the Partitioned attribute only from
        # 3.14. The token is URL-safe base64, so it needs no quoting.
        cookie = f"{COOKIES[kind]}={token}; HttpOnly; Path=/; SameSite=None; Secure; Partitioned"
        response.headers.append("set-cookie", cookie)
        return
    response.set_cookie(
        COOKIES[kind],
        token,
        secure=True,
        httponly=True,
        samesite=_SAME_SITE[kind],  # type: ignore[arg-type]
        path="/",
    )


def clear_cookie(response: Response, kind: Kind) -> None:
    response.delete_cookie(COOKIES[kind], path="/", secure=True, httponly=True)


async def acting(request: Request, kind: Kind) -> Acting:
    sessions: Sessions = request.app.state.web.sessions
    session = await sessions.resume(kind, request.cookies.get(COOKIES[kind]))
    if session is None:
        raise SignInNeeded(kind)
    who = await request.app.state.api_keys.principal(session.key_id)
    if who is None or who.tenant != session.tenant:
        await sessions.end(session)
        raise SignInNeeded(kind)
    asked = i18n.supported(request.query_params.get("lang"))
    if asked and asked != session.language:  # the language switch: kept for the session
        await sessions.set_language(session, asked)
        session = replace(session, language=asked)
    return Acting(session, who, request.app.state.ctx)


async def console(request: Request) -> Acting:
    return await acting(request, "console")


async def privacy(request: Request) -> Acting:
    return await acting(request, "privacy")


async def posted(request: Request, acting: Acting) -> dict[str, str]:
    """The form's text fields, after the CSRF check (403 if it fails, before anything runs)."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if not form_posted_here(request, values.get("csrf"), acting.session.csrf):
        raise Problem(403, "this form has expired or did not come from this page; reload it")
    return values


Console = Annotated[Acting, Depends(console)]
Privacy = Annotated[Acting, Depends(privacy)]
