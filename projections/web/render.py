"""Pages from Jinja templates, and errors as pages on the browser paths.

Templates are autoescaped; a page gets ``t`` (the translator), ``lang``, the session's
``csrf`` token for its forms, and the values its route passes. On ``/privacy/`` and
``/console/`` a problem (404, 409, 422...) is shown as a page in the reader's language,
with the same status; elsewhere the API's problem documents are untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.exceptions import HTTPException

from projections.api.problems import Problem
from projections.web import i18n
from projections.web.auth import Acting, SignInNeeded
from projections.web.sessions import Session

Handler = Callable[[Request, Exception], Awaitable[Response]]
WEB_PREFIXES = ("/privacy", "/console")


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("projections.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    return env


def _when(value: Any) -> str:
    """An instant as the pages show it: UTC, to the second."""
    if value is None:
        return "—"
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M:%S UTC"))
    return str(value)


def language_of(request: Request, session: Session | None) -> str:
    asked = i18n.supported(request.query_params.get("lang"))
    if asked:
        return asked
    if session is not None:
        return session.language
    return i18n.negotiate(request.headers.get("accept-language"))


def page(
    request: Request,
    template: str,
    *,
    session: Session | None,
    status: int = 200,
    language: str | None = None,
    headers: dict[str, str] | None = None,
    **values: Any,
) -> HTMLResponse:
    lang = language or language_of(request, session)
    env: Environment = request.app.state.web.templates
    html = env.get_template(template).render(
        t=i18n.Translator(lang),
        lang=lang,
        languages=i18n.NAMES,
        path=request.url.path,
        csrf=session.csrf if session else "",
        session=session,
        **values,
    )
    return HTMLResponse(html, status_code=status, headers=headers)


def console_page(
    request: Request, acting: Acting, template: str, *, status: int = 200, **values: Any
) -> HTMLResponse:
    """A console page for the signed-in key (its session's language and CSRF token)."""
    return page(request, template, session=acting.session, status=status, area="console", **values)


def _is_page(request: Request) -> bool:
    return request.url.path.startswith(WEB_PREFIXES)


def _error_page(request: Request, status: int, detail: str | None) -> HTMLResponse:
    area = "console" if request.url.path.startswith("/console") else "privacy"
    return page(
        request,
        "error.html",
        session=None,
        status=status,
        area=area,
        status_code=status,
        detail=detail,
    )


def install(app: FastAPI) -> None:
    """Problems on the browser paths become pages. Call after ``problems.install``."""
    json_handlers: dict[Any, Handler] = dict(app.exception_handlers)

    def dispatch(kind: type[Exception]) -> Handler:
        async def handler(request: Request, exc: Exception) -> Response:
            if not _is_page(request):
                return await json_handlers[kind](request, exc)
            if isinstance(exc, SignInNeeded):
                if exc.kind == "console":
                    return RedirectResponse("/console/sign-in", status_code=303)
                return page(
                    request, "privacy/expired.html", session=None, status=401, area="privacy"
                )
            if isinstance(exc, Problem):
                return _error_page(request, exc.status, exc.detail)
            if isinstance(exc, HTTPException):
                return _error_page(request, exc.status_code, None)
            return _error_page(request, 422, None)

        return handler

    for kind in (Problem, HTTPException, RequestValidationError):
        app.add_exception_handler(kind, dispatch(kind))
