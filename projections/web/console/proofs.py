"""The auditor's downloads: inclusion and consistency proofs, consent receipts and records,
erasure certificates, each exactly as the API's route gives it, as an attachment.

Rules this module keeps:

* **The API's routes build and sign** (``projections.api.proofs``, ``documents``); a download
  is the route's own body (a signed document is never re-serialised), with
  ``Content-Disposition: attachment``.
* **Every download is a POST with the session's CSRF token**, so no subject id or event id
  lands in a URL, a history or a log.
* **A problem is a notice, not a crash**: an unknown event (404), an erasure not completed or
  events not yet checkpointed (409), a server without a documents key (503) re-show the page
  with the API's own explanation, under the problem's status.
* **Forms a key cannot use are not offered**; the page says which need another scope.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from projections.api import documents
from projections.api import proofs as proof_routes
from projections.api.problems import Problem
from projections.reports.service import ReportFormat
from projections.web import auth
from projections.web.auth import Acting, posted
from projections.web.calls import allowed, call
from projections.web.render import console_page as show

router = APIRouter(prefix="/console", include_in_schema=False)
FORMS: dict[str, Callable[..., Awaitable[Any]]] = {
    "inclusion": proof_routes.inclusion,
    "consistency": proof_routes.consistency,
    "receipt": documents.consent_receipt,
    "records": documents.consent_records,
    "certificate": documents.erasure_certificate,
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class Refused(Exception):
    """A form field that cannot be sent to the route: named by its message key."""


@router.get("/proofs")
async def proofs_page(request: Request, acting: auth.Console) -> Response:
    return _page(request, acting)


def _page(
    request: Request,
    acting: Acting,
    *,
    error: str | None = None,
    status: int = 200,
    form: str | None = None,
) -> Response:
    usable = {name: allowed(route, acting.who) for name, route in FORMS.items()}
    return show(
        request,
        acting,
        "console/proofs.html",
        status=status,
        usable=usable,
        limited=not all(usable.values()),
        error=error,
        failed_form=form,
    )


@router.post("/proofs/{kind}")
async def download(kind: str, request: Request, acting: auth.Console) -> Response:
    form = await posted(request, acting)
    if kind not in FORMS:
        return _page(request, acting, error="audit.proofs_unknown", status=404)
    try:
        name, response = await _DOWNLOADS[kind](acting, form)
    except Refused as exc:
        return _page(request, acting, error=str(exc), status=422, form=kind)
    except Problem as exc:
        return _page(request, acting, error=exc.detail, status=exc.status, form=kind)
    response.headers["content-disposition"] = f'attachment; filename="{_safe(name)}"'
    return response


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name)[:120]


def _json(model: BaseModel) -> Response:
    return JSONResponse(model.model_dump(mode="json"))


def _subject(form: dict[str, str]) -> UUID:
    try:
        return UUID(form.get("subject_id", "").strip())
    except ValueError:
        raise Refused("audit.proofs_bad_subject") from None


def _size(form: dict[str, str], field: str, *, optional: bool = False) -> int | None:
    text = form.get(field, "").strip()
    if not text and optional:
        return None
    if not text.isdigit() or len(text) > 18:
        raise Refused("audit.proofs_bad_size")
    return int(text)


async def _inclusion(acting: Acting, form: dict[str, str]) -> tuple[str, Response]:
    event_id = form.get("event_id", "").strip()
    if not event_id or len(event_id) > 200 or not event_id.isprintable():
        raise Refused("audit.proofs_bad_event")
    proof = await call(
        proof_routes.inclusion,
        acting.ctx,
        acting.who,
        sequence=None,
        event_id=event_id,
        tree_size=None,
    )
    return f"inclusion-proof-{proof.sequence}.json", _json(proof)


async def _consistency(acting: Acting, form: dict[str, str]) -> tuple[str, Response]:
    first, second = _size(form, "first"), _size(form, "second", optional=True)
    proof = await call(proof_routes.consistency, acting.ctx, acting.who, first=first, second=second)
    return f"consistency-proof-{proof.first}-{proof.second}.json", _json(proof)


async def _receipt(acting: Acting, form: dict[str, str]) -> tuple[str, Response]:
    subject, purpose = _subject(form), form.get("purpose", "").strip()
    if not purpose or len(purpose) > 200:
        raise Refused("audit.proofs_bad_purpose")
    response = await call(
        documents.consent_receipt, acting.ctx, acting.who, subject_id=subject, purpose=purpose
    )
    return f"consent-receipt-{subject}-{purpose}.json", response


async def _records(acting: Acting, form: dict[str, str]) -> tuple[str, Response]:
    subject = _subject(form)
    response = await call(documents.consent_records, acting.ctx, acting.who, subject_id=subject)
    return f"consent-records-{subject}.json", response


async def _certificate(acting: Acting, form: dict[str, str]) -> tuple[str, Response]:
    subject, fmt = _subject(form), form.get("format", "json")
    if fmt not in ("json", "pdf"):
        raise Refused("audit.proofs_bad_format")
    response = await call(
        documents.erasure_certificate,
        acting.ctx,
        acting.who,
        subject_id=subject,
        format=ReportFormat(fmt),
    )
    return f"erasure-certificate-{subject}.{fmt}", response


_DOWNLOADS: dict[str, Callable[[Acting, dict[str, str]], Awaitable[tuple[str, Response]]]] = {
    "inclusion": _inclusion,
    "consistency": _consistency,
    "receipt": _receipt,
    "records": _records,
    "certificate": _certificate,
}
