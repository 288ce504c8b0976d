"""Rectification (GDPR art. 16), restriction of processing (art. 18) and objection (art. 21):
recording them, and the subject's state of the last two.

Recording is for ``admin`` keys, as for erasure and legal holds (``projections.api.commands``):
each route builds the command a producer would send over Kafka and records it, a ledger rule's
refusal being a 409 problem with the rule's ``reason`` (``restriction_exists``,
``restriction_unknown``, ``objection_not_applicable``, ``objection_exists``,
``objection_unknown``, ``objection_absolute``, ``rectification_target_unknown``,
``field_not_rectifiable``, ``unknown_purpose``, ``unknown_subject``, ``subject_erased``).
Reading is for ``reader``, ``auditor`` and ``admin`` keys; notes, reasons and reasoning are
personal and opened for auditors and admins only.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from projections.api import answers
from projections.api.access import Principal, Scope, require
from projections.api.commands import record
from projections.api.context import ApiContext, Reading, context
from projections.api.models import (
    CommandOutcome,
    GroundsCommand,
    LiftCommand,
    Objection,
    ObjectionCommand,
    RectificationCommand,
    Restriction,
    RestrictionCommand,
    SubjectQuery,
    SubjectRights,
)
from projections.api.problems import PROBLEM_RESPONSES
from projections.queries import Conn

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["rights"])
Ctx = Annotated[ApiContext, Depends(context)]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
Reader = Annotated[Principal, Depends(require(Scope.READER, Scope.AUDITOR, Scope.ADMIN))]


@router.post("/subject/rectifications", status_code=201)
async def rectify(body: RectificationCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Correct a personal field of one of the subject's events: every answer and report shows
    the new value from then on, with when and by whom it changed; the event keeps the old
    ciphertext for audit."""
    return await record(
        ctx,
        "PersonalDataRectified",
        who,
        body.subject_ref,
        body.event_id,
        corrects_event_id=body.corrects_event_id,
        field=body.field,
        value=body.value,
        source=body.source,
        reason=body.reason,
    )


@router.post("/subject/restrictions", status_code=201)
async def restrict(body: RestrictionCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Restrict processing: the purpose check refuses every purpose the restriction covers
    (``processing_restricted``) except those catalogued as allowed under restriction."""
    return await record(
        ctx,
        "ProcessingRestricted",
        who,
        body.subject_ref,
        body.event_id,
        restriction_reference=body.restriction_reference,
        grounds=body.grounds,
        purposes=body.purposes,
        source=body.source,
        note=body.note,
    )


@router.post("/subject/restrictions/lift")
async def lift(body: LiftCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Lift the restriction with this reference (tell the subject first: art. 18(3))."""
    return await record(
        ctx,
        "RestrictionLifted",
        who,
        body.subject_ref,
        None,
        restriction_reference=body.restriction_reference,
        source=body.source,
        note=body.note,
    )


@router.post("/subject/objections", status_code=201)
async def object_to(body: ObjectionCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Record the subject's objection to a purpose resting on legitimate interests or a
    public task, or catalogued as direct marketing: the purpose check answers ``objected``."""
    return await record(
        ctx,
        "ObjectionRaised",
        who,
        body.subject_ref,
        body.event_id,
        purpose=body.purpose,
        source=body.source,
        reason=body.reason,
    )


@router.post("/subject/objections/grounds")
async def compelling_grounds(body: GroundsCommand, ctx: Ctx, who: Admin) -> CommandOutcome:
    """Record compelling legitimate grounds that override a standing objection (never one to
    direct marketing); the purpose is decided by its legal basis again."""
    return await record(
        ctx,
        "CompellingGroundsRecorded",
        who,
        body.subject_ref,
        None,
        purpose=body.purpose,
        grounds_reference=body.grounds_reference,
        reasoning=body.reasoning,
    )


@router.post("/subject/rights")
async def rights_by_ref(body: SubjectQuery, ctx: Ctx, who: Reader) -> SubjectRights:
    """The subject's restrictions in place and objections."""
    async with ctx.connection() as conn:
        return await rights(ctx, conn, who, await answers.resolve(ctx, conn, who, body))


@router.get("/subjects/{subject_id}/rights")
async def rights_by_id(subject_id: UUID, ctx: Ctx, who: Reader) -> SubjectRights:
    async with ctx.connection() as conn:
        return await rights(ctx, conn, who, subject_id)


async def rights(ctx: Reading, conn: Conn, who: Principal, subject_id: UUID) -> SubjectRights:
    header, opener = await answers.subject_header(ctx, conn, who, subject_id)
    restrictions, objections = await ctx.queries.rights(conn, who.tenant, subject_id)
    return SubjectRights(
        **header,  # type: ignore[arg-type]
        restrictions=[opener.model(Restriction, r, "note") for r in restrictions],
        objections=[opener.model(Objection, o, "reason", "reasoning") for o in objections],
    )
