"""Subject access reports and portability exports: JSON or PDF, recorded in the ledger.

Who may ask:

- **Staff** — ``auditor`` and ``admin`` keys — by reference (``POST /v1/subject/report``) or
  by subject id (``GET /v1/subjects/{id}/report``). Personal fields are opened.
- **The subject, through the tenant's portal** — a ``producer`` key, by reference only, and
  only while the tenant allows it (``ledger tenants subject-reports T --allow``, recorded as
  ``SubjectReportPolicySet``). The portal authenticates the person; the reference in the body
  is the proof that the caller already knows whose report it asks for, and the report holds
  that person's own data (art. 15(3), 20), personal fields opened. Recorded as
  ``requested_by: subject``.
- ``reader`` keys get no report: it is the subject's whole file.

A subject of another tenant is 404, like a missing one; a reference of an erased subject is
410 (ask by subject id: the report says erased and lists the non-personal facts). Responses are
``Cache-Control: no-store``, carry the report id (``X-Report-Id``, the ``AccessReportGenerated``
event's id) and the SHA-256 the ledger recorded (``Repr-Digest``, RFC 9530).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from ledger.application.service import Ledger
from ledger.domain.rules import RuleViolation
from projections.api.access import Principal, Scope, require
from projections.api.context import ApiContext, context
from projections.api.models import SubjectQuery
from projections.api.problems import PROBLEM_RESPONSES, Forbidden, Gone, NotFound
from projections.reports.model import Requester
from projections.reports.service import (
    MEDIA_TYPES,
    Delivered,
    ReportFormat,
    SubjectNotFound,
    generate,
    new_request,
)

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["reports"])
Ctx = Annotated[ApiContext, Depends(context)]
Staff = Annotated[Principal, Depends(require(Scope.AUDITOR, Scope.ADMIN))]
Asker = Annotated[Principal, Depends(require(Scope.PRODUCER, Scope.AUDITOR, Scope.ADMIN))]
_T = TypeVar("_T")
_REPORT_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report (JSON: docs/subject-report.schema.json), or its PDF.",
        "content": {MEDIA_TYPES[ReportFormat.JSON]: {}, MEDIA_TYPES[ReportFormat.PDF]: {}},
    }
}


class ReportQuery(SubjectQuery):
    format: ReportFormat = Field(default=ReportFormat.JSON, description="json or pdf.")


@router.post("/subject/report", response_class=Response, responses=_REPORT_RESPONSE)
async def report_by_ref(body: ReportQuery, ctx: Ctx, who: Asker) -> Response:
    """A subject's access report by upstream reference: staff, or the subject through the
    tenant's portal where the tenant allows it. Its generation is recorded in the ledger."""
    requester = await _requester(ctx, who)
    async with ctx.connection() as conn:
        digest = ctx.keys.digest(who.tenant, body.subject_ref)
        subject_id = await ctx.queries.subject_by_digest(conn, who.tenant, digest)
    if subject_id == "erased":
        raise Gone("this reference belonged to a subject who has been erased; ask by subject id")
    if subject_id is None:
        raise NotFound("no subject with this reference is recorded for your tenant")
    return await _deliver(ctx, who, requester, subject_id, body.format)


@router.get("/subjects/{subject_id}/report", response_class=Response, responses=_REPORT_RESPONSE)
async def report_by_id(
    subject_id: UUID,
    ctx: Ctx,
    who: Staff,
    format: Annotated[ReportFormat, Query(description="json or pdf.")] = ReportFormat.JSON,
) -> Response:
    """A subject's access report by subject id (staff only); erased subjects included."""
    return await _deliver(ctx, who, await _requester(ctx, who), subject_id, format)


async def _requester(ctx: ApiContext, who: Principal) -> Requester:
    if who.has_any(Scope.AUDITOR, Scope.ADMIN):
        scope = Scope.ADMIN if Scope.ADMIN in who.scopes else Scope.AUDITOR
        return Requester(requested_by="staff", scope=scope.value, key_id=who.key_id)
    allowed = await _with_ledger(
        ctx, lambda ledger: ledger.tenant(who.tenant).allow_subject_reports
    )
    if not allowed:
        raise Forbidden("your tenant has not enabled reports requested on the subject's behalf")
    return Requester(requested_by="subject", scope=Scope.PRODUCER.value, key_id=who.key_id)


async def _with_ledger(ctx: ApiContext, fn: Callable[[Ledger], _T]) -> _T:
    try:
        return await run_in_threadpool(ctx.writer.call, fn)
    except RuleViolation:  # an unregistered tenant: it has no subjects either
        raise NotFound("no such subject is recorded for your tenant") from None


async def _deliver(
    ctx: ApiContext, who: Principal, requester: Requester, subject_id: UUID, fmt: ReportFormat
) -> Response:
    request = new_request(who.tenant, subject_id, requester, may_see_personal=True)

    async def ledger_call(fn: Callable[[Ledger], _T]) -> _T:
        return await _with_ledger(ctx, fn)

    try:
        async with ctx.connection() as conn:
            delivered = await generate(
                ctx.queries, conn, ctx.keys, ledger_call, request, fmt, producer=f"api:{who.key_id}"
            )
    except SubjectNotFound:
        raise NotFound("no such subject is recorded for your tenant") from None
    return _response(delivered, fmt)


def _response(delivered: Delivered, fmt: ReportFormat) -> Response:
    digest = base64.b64encode(bytes.fromhex(delivered.sha256)).decode()
    name = f"subject-report-{delivered.report_id}.{fmt.value}"
    headers = {
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
        "X-Report-Id": delivered.report_id,
        "Repr-Digest": f"sha-256=:{digest}:",
    }
    return Response(delivered.content, media_type=delivered.media_type, headers=headers)
