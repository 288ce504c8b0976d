"""The register of requests (GDPR art. 12(3)): opening, verifying, extending and completing a
subject's request, and the tenant's register with overdue and due-soon flags.

Recording is for ``admin`` keys (as for every command route, ``projections.api.commands``);
a ledger rule's refusal is a 409 problem with its ``reason`` (``request_unknown``,
``request_settled``, ``extension_exceeded``, ``resolution_mismatch``,
``request_completed_by_erasure``, ``subject_erased``). An erasure request is opened by
``POST /v1/subject/erasure`` and settled by the erasure workflow; it is listed here all the
same. Reading is for ``reader``, ``auditor`` and ``admin`` keys; a request's details and a
refusal's reason are personal, opened for auditors and admins on a subject's own list only.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from projections.api import answers
from projections.api.access import Principal, Scope, require
from projections.api.commands import record
from projections.api.context import ApiContext, context
from projections.api.models import (
    CommandOutcome,
    CompleteCommand,
    ExtendCommand,
    Register,
    RegisterEntry,
    RegisterKind,
    RequestCommand,
    VerifyCommand,
)
from projections.api.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["requests"])
Ctx = Annotated[ApiContext, Depends(context)]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
Reader = Annotated[Principal, Depends(require(Scope.READER, Scope.AUDITOR, Scope.ADMIN))]
State = Literal["open", "overdue", "due_soon", "settled", "all"]


@router.post("/subject/requests", status_code=201)
async def open_request(body: RequestCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Open a request; its id is the outcome's ``event_id``. Due one month after it arrived."""
    return await record(
        ctx,
        "RequestOpened",
        who,
        body.subject_ref,
        body.event_id,
        occurred_at=body.received_at,
        kind=body.kind,
        channel=body.channel,
        identity_verified=body.identity_verified,
        details=body.details,
    )


@router.post("/subject/requests/verify")
async def verify_identity(body: VerifyCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    return await record(
        ctx,
        "RequestIdentityVerified",
        who,
        body.subject_ref,
        None,
        request_id=body.request_id,
        method=body.method,
    )


@router.post("/subject/requests/extend")
async def extend(body: ExtendCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Move the deadline by one or two months (two at most in all), with the reason."""
    return await record(
        ctx,
        "RequestExtended",
        who,
        body.subject_ref,
        None,
        request_id=body.request_id,
        months=body.months,
        extension_reason=body.reason,
    )


@router.post("/subject/requests/complete")
async def complete(body: CompleteCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Settle a request: FULFILLED by the subject's event that answered it, or REFUSED with
    the reason."""
    return await record(
        ctx,
        "RequestCompleted",
        who,
        body.subject_ref,
        None,
        request_id=body.request_id,
        outcome=body.outcome,
        resolved_by_event_id=body.resolved_by_event_id,
        reason=body.reason,
    )


@router.get("/requests")
async def register(
    ctx: Ctx,
    who: Reader,
    state: Annotated[State, Query(description="Which requests; default the open ones.")] = "open",
    kind: RegisterKind | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Register:
    """The tenant's register, by due date, with overdue and due-soon flags (no personal
    values: a subject's own list has them)."""
    async with ctx.connection() as conn:
        rows = await ctx.queries.requests(conn, who.tenant, state=state, kind=kind, limit=limit)
    return Register.impersonal(rows)


@router.get("/subjects/{subject_id}/requests")
async def subject_requests(subject_id: UUID, ctx: Ctx, who: Reader) -> Register:
    """Every request of the subject, with its details for auditors and admins."""
    async with ctx.connection() as conn:
        _, opener = await answers.subject_header(ctx, conn, who, subject_id)
        rows = await ctx.queries.requests(conn, who.tenant, state="all", subject_id=subject_id)
    return Register(requests=[opener.model(RegisterEntry, r, "details", "reason") for r in rows])
