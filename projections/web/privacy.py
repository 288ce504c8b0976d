"""The privacy center: a data subject's own page, under ``/privacy/``.

Rules this module keeps:

* **One subject per session**, the one the tenant's link named; the reference stays on the
  server (``projections.web.sessions``) and no URL, page or log carries it.
* **Reads as a reader, records as the link's key.** States are read through the API's reader
  routes (no personal field is shown that the person did not need); the report is asked as
  a tenant's portal asks it (``producer``), so it is recorded as the subject's own request and
  the tenant's ``subject-reports`` policy decides; grants, withdrawals and requests go through
  the API's own command routes with source or channel ``privacy-center``, so they are ledger
  events like any other.
* **Required consents are explained, not toggled**; a purpose with another legal basis says
  which, and that the person may object.
* **Every post carries the session's CSRF token**; after a post the browser is sent back with
  303 to the overview, which says what was recorded and under which event id, once the views
  show it (read your writes: the views follow the ledger a moment later; a few seconds at
  most are waited for).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from projections.api import commands, records, register, reports, subjects
from projections.api.models import (
    ConsentGrantCommand,
    ConsentWithdrawalCommand,
    ErasureCommand,
    Purpose,
    RequestCommand,
    SubjectConsents,
    SubjectQuery,
)
from projections.api.problems import Conflict, Forbidden, Gone, NotFound, Problem
from projections.web import auth
from projections.web.auth import Acting
from projections.web.calls import call
from projections.web.render import page

router = APIRouter(prefix="/privacy", include_in_schema=False)
SOURCE = "privacy-center"
REQUEST_KINDS = ("ACCESS", "PORTABILITY", "RECTIFICATION", "RESTRICTION", "OBJECTION", "ERASURE")
MAX_DETAILS = 5_000
SHOWN_WITHIN = 3.0  # seconds a post waits for the views to show what it recorded


@router.get("/enter")
async def enter(request: Request, code: str = "") -> Response:
    """Exchanges a link's one-time code for a session, then sends the browser to a clean URL."""
    redeemed = await request.app.state.web.sessions.redeem(code)
    if redeemed is None:
        return page(request, "privacy/expired.html", session=None, status=401, area="privacy")
    token, _ = redeemed
    response = RedirectResponse("/privacy/", status_code=303)
    auth.set_cookie(response, "privacy", token, framed=request.app.state.web.embeddable)
    return response


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, acting: auth.Privacy) -> Response:
    session = acting.session
    ctx, ref = acting.ctx, _ref(acting)
    purposes: list[Purpose] = await call(records.purposes, ctx, acting.reader)
    state: SubjectConsents | None = None
    erased = False
    try:
        state = await call(
            subjects.consents_by_ref, ctx, acting.reader, body=SubjectQuery(subject_ref=ref)
        )
    except Gone:
        erased = True
    except NotFound:
        state = None
    requests: list[Any] = []
    if state is not None:
        register_page = await call(
            register.subject_requests, ctx, acting.reader, subject_id=state.subject_id
        )
        requests = register_page.requests
    consents = {c.purpose: c for c in state.consents} if state else {}
    return page(
        request,
        "privacy/overview.html",
        session=session,
        language=session.language,
        area="privacy",
        items=[_item(p, consents.get(p.purpose)) for p in purposes],
        requests=requests,
        erased=erased or (state is not None and state.erasure_requested_at is not None),
        done=request.query_params.get("done"),
        purpose=request.query_params.get("purpose"),
        event=request.query_params.get("event"),
        error=request.query_params.get("error"),
        kinds=REQUEST_KINDS,
    )


def _item(purpose: Purpose, consent: Any) -> dict[str, Any]:
    consentable = purpose.legal_basis == "CONSENT"
    state = consent.state if consent is not None else "never"
    return {
        "purpose": purpose,
        "consentable": consentable,
        "toggle": consentable and not purpose.required,
        "state": state,
        "text": purpose.texts.get(purpose.current_version, "") if consentable else "",
        "agreed_version": consent.consent_text_version if consent is not None else None,
        "outdated": state == "granted" and consent.consent_text_version != purpose.current_version,
        "since": consent.changed_at if consent is not None else None,
    }


def _ref(acting: Acting) -> str:
    ref = acting.session.subject_ref
    assert ref is not None, "a privacy session always holds its subject's reference"
    return ref


def _back(**query: str) -> RedirectResponse:
    return RedirectResponse("/privacy/?" + urlencode(query), status_code=303)


@router.post("/consents")
async def change_consent(request: Request, acting: auth.Privacy) -> Response:
    form = await auth.posted(request, acting)
    purpose, decision = form.get("purpose", ""), form.get("decision", "")
    purposes: list[Purpose] = await call(records.purposes, acting.ctx, acting.reader)
    known = {p.purpose: p for p in purposes}
    chosen = known.get(purpose)
    if chosen is None or decision not in ("grant", "withdraw"):
        raise Problem(422, "choose a purpose and whether to give or withdraw consent")
    if chosen.required or chosen.legal_basis != "CONSENT":
        raise Problem(409, "this purpose's consent cannot be changed here")
    try:
        if decision == "grant":
            outcome = await call(
                commands.grant_consent,
                acting.ctx,
                acting.who,
                body=ConsentGrantCommand(
                    subject_ref=_ref(acting),
                    purpose=purpose,
                    consent_text_version=chosen.current_version,
                    source=SOURCE,
                    user_agent=(request.headers.get("user-agent") or "")[:1000] or None,
                    ip_address=request.client.host if request.client else None,
                ),
            )
        else:
            outcome = await call(
                commands.withdraw_consent,
                acting.ctx,
                acting.who,
                body=ConsentWithdrawalCommand(
                    subject_ref=_ref(acting), purpose=purpose, source=SOURCE
                ),
            )
    except Conflict as exc:
        return _back(error=str(exc.extra.get("reason") or "refused"), purpose=purpose)
    done = "granted" if decision == "grant" else "withdrawn"
    await _shown(acting, outcome.event_id, purpose)
    return _back(done=done, purpose=purpose, event=outcome.event_id)


@router.post("/report")
async def download_report(request: Request, acting: auth.Privacy) -> Response:
    form = await auth.posted(request, acting)
    fmt = form.get("format", "pdf")
    if fmt not in ("json", "pdf"):
        raise Problem(422, "the report comes as json or pdf")
    query = reports.ReportQuery(subject_ref=_ref(acting), format=reports.ReportFormat(fmt))
    try:
        response: Response = await call(
            reports.report_by_ref, acting.ctx, acting.portal, body=query
        )
    except NotFound:
        return _back(error="nothing_recorded")
    except Forbidden:  # the tenant has not enabled reports on the subject's own request
        return _back(error="reports_off")
    response.headers["content-disposition"] = f'attachment; filename="my-data.{fmt}"'
    return response


@router.post("/requests")
async def file_request(request: Request, acting: auth.Privacy) -> Response:
    form = await auth.posted(request, acting)
    kind = form.get("kind", "")
    details = form.get("details", "").strip()[:MAX_DETAILS] or None
    if kind not in REQUEST_KINDS:
        raise Problem(422, "choose the kind of request")
    try:
        if kind == "ERASURE":
            if form.get("confirm") != "yes":
                return _back(error="confirm_erasure")
            outcome = await call(
                commands.request_erasure,
                acting.ctx,
                acting.who,
                body=ErasureCommand(subject_ref=_ref(acting), source=SOURCE, reason=details),
            )
        else:
            outcome = await call(
                register.open_request,
                acting.ctx,
                acting.who,
                body=RequestCommand(
                    subject_ref=_ref(acting),
                    kind=_request_kind(kind),
                    channel=SOURCE,
                    identity_verified=True,
                    details=details,
                ),
            )
    except ValidationError:
        raise Problem(422, "the request's details are not valid") from None
    except Conflict as exc:
        return _back(error=str(exc.extra.get("reason") or "refused"))
    if kind != "ERASURE":
        await _shown(acting, outcome.event_id)
    return _back(done="request", purpose=kind, event=outcome.event_id)


async def _shown(acting: Acting, event_id: str, purpose: str | None = None) -> None:
    """Waits, up to ``SHOWN_WITHIN`` seconds, until the views show the event just recorded
    (the consent of ``purpose``, else the subject's requests), so the page the person is sent
    to shows what they did; past that, the page still names the event it recorded."""
    deadline = time.monotonic() + SHOWN_WITHIN
    query = SubjectQuery(subject_ref=_ref(acting))
    while time.monotonic() < deadline:
        with contextlib.suppress(NotFound):
            state = await call(subjects.consents_by_ref, acting.ctx, acting.reader, body=query)
            if purpose is not None:
                if any(c.event_id == event_id for c in state.consents if c.purpose == purpose):
                    return
            else:
                listed = await call(
                    register.subject_requests,
                    acting.ctx,
                    acting.reader,
                    subject_id=state.subject_id,
                )
                if any(r.request_id == event_id for r in listed.requests):
                    return
        await asyncio.sleep(0.05)


def _request_kind(
    kind: str,
) -> Literal["ACCESS", "PORTABILITY", "RECTIFICATION", "RESTRICTION", "OBJECTION"]:
    assert kind in REQUEST_KINDS and kind != "ERASURE"
    return kind  # type: ignore[return-value]


@router.post("/sign-out")
async def sign_out(request: Request, acting: auth.Privacy) -> Response:
    await auth.posted(request, acting)
    await request.app.state.web.sessions.end(acting.session)
    response = page(request, "privacy/signed_out.html", session=None, area="privacy")
    auth.clear_cookie(response, "privacy")
    return response
