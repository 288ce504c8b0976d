"""RFC 9457 problem details: every error the query API returns is ``application/problem+json``.

Rules this module keeps:

* A problem never echoes what the client sent. Validation errors report where the request
  was wrong (``loc``) and which rule it broke (``msg``, ``type``), never the value: values
  are subject references, e-mail addresses and other personal data. A message that would
  quote a submitted string is replaced by a generic one.
* An unexpected exception becomes a generic 500. The log records the exception's type, the
  route template and the code locations it passed through — never its message, which may
  hold values, and never the request body or raw path.
* Every ``type`` is ``https://compliance-ledger.dev/problems/<slug>``; the slug of an HTTP
  error without a more specific one is its status phrase (``not-found``,
  ``method-not-allowed``).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.plumbing.logs import get as get_logger

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://compliance-ledger.dev/problems/"
UNEXPECTED_DETAIL = "The server could not complete the request; the error has been logged."
REDACTED_MESSAGE = "Input is not valid here"
_NO_BODY = frozenset({204, 205, 304})
_REF_PREFIX = "#/components/schemas/"


def problem_type(slug: str) -> str:
    return TYPE_BASE + slug


def _slug(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "error"
    return phrase.lower().replace(" ", "-").replace("'", "")


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class FieldError(BaseModel):
    """One reason a request was invalid: where, and which rule — never the value."""

    loc: list[str | int]
    msg: str
    type: str


class ProblemDocument(BaseModel):
    """The body of every error response (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class Problem(Exception):
    """An error the API reports to the client as a problem document.

    ``detail`` is shown to the client: it must not contain personal values. ``extra``
    members (such as ``errors``) are added to the document as they are.
    """

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title or _title(status))
        self.status = status
        self.title = title or _title(status)
        self.detail = detail
        self.type = type or problem_type(_slug(status))
        self.headers = dict(headers or {})
        self.extra = extra

    def document(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            body["detail"] = self.detail
        return {**body, **self.extra}

    def response(self) -> Response:
        if self.status in _NO_BODY:
            return Response(status_code=self.status, headers=self.headers)
        return JSONResponse(
            self.document(), status_code=self.status, headers=self.headers, media_type=MEDIA_TYPE
        )


class _StatusProblem(Problem):
    STATUS: ClassVar[HTTPStatus]

    def __init__(self, detail: str | None = None, *, type: str | None = None, **extra: Any) -> None:
        super().__init__(self.STATUS.value, detail, type=type, **extra)


class BadRequest(_StatusProblem):
    STATUS = HTTPStatus.BAD_REQUEST


class Unauthorized(_StatusProblem):
    """No valid API key. Carries ``WWW-Authenticate: Bearer`` as RFC 9110 requires."""

    STATUS = HTTPStatus.UNAUTHORIZED

    def __init__(self, detail: str | None = None, *, type: str | None = None, **extra: Any) -> None:
        super().__init__(detail, type=type, **extra)
        self.headers["WWW-Authenticate"] = "Bearer"


class Forbidden(_StatusProblem):
    STATUS = HTTPStatus.FORBIDDEN


class NotFound(_StatusProblem):
    STATUS = HTTPStatus.NOT_FOUND


class Conflict(_StatusProblem):
    STATUS = HTTPStatus.CONFLICT


class Gone(_StatusProblem):
    """The reference belonged to a subject who has been erased: nothing about it can be read."""

    STATUS = HTTPStatus.GONE


class Unavailable(_StatusProblem):
    STATUS = HTTPStatus.SERVICE_UNAVAILABLE


def _responses() -> dict[int | str, dict[str, Any]]:
    described = {
        400: "The request is malformed.",
        401: "No valid API key (`Authorization: Bearer lk_...`).",
        403: "The API key lacks the scope or tenant this needs.",
        404: "Nothing of that name, for this tenant.",
        409: "The ledger refused the request under one of its rules; `reason` says which.",
        410: "The reference belonged to a subject who has been erased.",
        422: "The request failed validation; `errors` says where, never echoing values.",
        503: "A dependency (the database) is unavailable; retry later.",
    }
    content = {MEDIA_TYPE: {"schema": {"$ref": _REF_PREFIX + "ProblemDocument"}}}
    return {status: {"description": text, "content": content} for status, text in described.items()}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = _responses()
"""``responses=PROBLEM_RESPONSES`` on a route lists its problem+json error responses (the
schema they name is added to the OpenAPI components by ``install``)."""


def _component_schemas() -> dict[str, Any]:
    schema = ProblemDocument.model_json_schema(ref_template=_REF_PREFIX + "{model}")
    nested = schema.pop("$defs", {})
    return {"ProblemDocument": schema, **nested}


def _add_schemas_to_openapi(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()  # cached by FastAPI; adding to it once is enough
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        if "ProblemDocument" not in schemas:
            schemas.update(_component_schemas())
        return document

    # FastAPI's documented way to extend the generated document.
    app.openapi = openapi  # type: ignore[method-assign]


# --- validation errors -----------------------------------------------------------------------

# Pydantic error types whose message quotes part of the input.
_QUOTING_TYPES = frozenset({"union_tag_invalid", "union_tag_not_found"})


def _strings(value: object, depth: int = 0) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif depth < 3 and isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key, depth + 1)
            yield from _strings(item, depth + 1)
    elif depth < 3 and isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item, depth + 1)


def _quotes_input(msg: str, submitted: object) -> bool:
    return any(len(s) >= 3 and s in msg for s in _strings(submitted))


def field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """``loc``, ``msg`` and ``type`` of each error; ``input``, ``ctx`` and ``url`` are dropped."""
    errors = []
    for error in exc.errors():
        kind = str(error.get("type", "invalid"))
        msg = str(error.get("msg", ""))
        if kind in _QUOTING_TYPES or _quotes_input(msg, error.get("input")):
            msg = REDACTED_MESSAGE
        loc = [p if isinstance(p, int) else str(p) for p in error.get("loc", ())]
        errors.append({"loc": loc, "msg": msg, "type": kind})
    return errors


# --- handlers ------------------------------------------------------------------------------


def _route_template(scope: Scope) -> str:
    return str(getattr(scope.get("route"), "path", "<unmatched>"))


def _log_unexpected(scope: Scope, exc: BaseException) -> None:
    frames = traceback.extract_tb(exc.__traceback__)[-8:]
    get_logger("api").error(
        "request_failed",
        error=type(exc).__qualname__,
        method=scope.get("method"),
        route=_route_template(scope),
        frames=[f"{f.filename}:{f.lineno} in {f.name}" for f in frames],
    )


def _unexpected() -> Problem:
    return Problem(500, UNEXPECTED_DETAIL, type=problem_type("internal-error"))


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail: str | None = exc.detail if isinstance(exc.detail, str) else None
    if detail == _title(exc.status_code):
        detail = None  # the title says it already
    return Problem(exc.status_code, detail, headers=exc.headers).response()


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return Problem(
        422,
        "The request is not valid; see errors.",
        title="Invalid request",
        type=problem_type("invalid-request"),
        errors=field_errors(exc),
    ).response()


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    """Backstop for exceptions raised outside ``_ContainUnexpected`` (in outer middleware)."""
    _log_unexpected(request.scope, exc)
    return _unexpected().response()


class _ContainUnexpected:
    """Turns an unhandled exception into the generic 500 problem, logged once by us.

    The exception is not re-raised when the response could still be sent, so the server's
    own traceback log (which would print the exception's message) never sees it. If the
    response had already started, it is re-raised: the connection must be broken.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            _log_unexpected(scope, exc)
            if started:
                raise
            await _unexpected().response()(scope, receive, send)


def install(app: FastAPI) -> None:
    """Every error ``app`` returns becomes a problem document. Call before the app starts."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_middleware(_ContainUnexpected)
    _add_schemas_to_openapi(app)
