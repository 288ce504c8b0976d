"""Admin routes that record facts: consents given and withdrawn, erasure requests and legal
holds.

They build the same ledger command a producer would send over Kafka and record it directly
(one ledger transaction each, in a worker thread: the ledger application is synchronous). A
refusal by a ledger rule is a 409 problem carrying the rule's ``reason``; a legal hold does not
refuse an erasure request but is recorded as its refusal (``status`` ``refused`` in the
erasure status). Values that break the content rules ingest applies are a 422 problem. The
producer of these events is ``api:<key id>``, so the ledger shows which
key asked. Personal fields (the reason, a hold's note) are sealed like any other.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from ledger.domain.rules import InvalidEvent
from ledger.wire.contract import Command, subject_command
from projections.api.access import Principal, Scope, require
from projections.api.context import ApiContext, context
from projections.api.models import (
    CommandOutcome,
    ConsentGrantCommand,
    ConsentWithdrawalCommand,
    ErasureCommand,
    LegalHoldCommand,
)
from projections.api.problems import PROBLEM_RESPONSES, Problem, problem_type

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["commands"])
Ctx = Annotated[ApiContext, Depends(context)]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]


def build_command(
    event_type: str, who: Principal, ref: str, event_id: str | None, /, **fields: Any
) -> Command:
    """The command, or a 422 problem when a value breaks the content rules producers' events
    must keep (a non-printable id or hold reference, say): nothing unfit is recorded."""
    try:
        return subject_command(
            event_type,
            tenant=who.tenant,
            subject_ref=ref,
            producer=f"api:{who.key_id}",
            event_id=event_id,
            **fields,
        )
    except InvalidEvent as exc:
        raise Problem(
            422,
            exc.detail,
            title="Invalid request",
            type=problem_type("invalid-request"),
            reason=exc.code,
        ) from None


async def record(
    ctx: ApiContext,
    event_type: str,
    who: Principal,
    ref: str,
    event_id: str | None,
    /,
    **fields: Any,
) -> CommandOutcome:
    """Builds the command (:func:`build_command`) and records it, in a worker thread."""
    command = build_command(event_type, who, ref, event_id, **fields)
    return await run_in_threadpool(ctx.writer.record, command)


@router.post("/subject/consent-grants", status_code=201)
async def grant_consent(body: ConsentGrantCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Record a consent given (the privacy center records its grants here, with source
    ``privacy-center``). Refused (409) for an unknown purpose or text version, a purpose
    whose legal basis is not consent, or an erased subject."""
    return await record(
        ctx,
        "ConsentGranted",
        who,
        body.subject_ref,
        body.event_id,
        purpose=body.purpose,
        consent_text_version=body.consent_text_version,
        source=body.source,
        evidence=body.evidence,
        ip_address=body.ip_address,
        user_agent=body.user_agent,
    )


@router.post("/subject/consent-withdrawals", status_code=201)
async def withdraw_consent(body: ConsentWithdrawalCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Record a consent withdrawn. Refused (409) for a required purpose or an erased subject;
    withdrawing a consent never given is recorded and changes no state."""
    return await record(
        ctx,
        "ConsentWithdrawn",
        who,
        body.subject_ref,
        body.event_id,
        purpose=body.purpose,
        source=body.source,
        evidence=body.evidence,
    )


@router.post("/subject/erasure", status_code=202)
async def request_erasure(body: ErasureCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Record an erasure request. Unless a legal hold refuses it, the subject's key and
    reference lookup are deleted in the same transaction; processors are notified next."""
    return await record(
        ctx,
        "ErasureRequested",
        who,
        body.subject_ref,
        body.event_id,
        source=body.source,
        reason=body.reason,
    )


@router.post("/subject/legal-holds", status_code=201)
async def place_legal_hold(body: LegalHoldCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Keep the subject's data: erasure requests are refused (and say why) while it holds."""
    return await record(
        ctx,
        "LegalHoldPlaced",
        who,
        body.subject_ref,
        None,
        hold_reference=body.hold_reference,
        note=body.note,
    )


@router.post("/subject/legal-holds/release")
async def release_legal_hold(body: LegalHoldCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    return await record(
        ctx, "LegalHoldReleased", who, body.subject_ref, None, hold_reference=body.hold_reference
    )
