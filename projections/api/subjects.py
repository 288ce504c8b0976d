"""Subject-level routes: purpose check, consent state, records and erasure status.

Each question can be asked by upstream reference (``POST /v1/subject/...``, the reference in
the body) or by the pseudonymous subject id the ledger topic carries
(``GET /v1/subjects/{subject_id}/...``). The tenant always comes from the API key; a subject
of another tenant is reported as not found, exactly like one that does not exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from projections.api import answers
from projections.api.access import Principal, Scope, require
from projections.api.context import ApiContext, context
from projections.api.models import (
    NO_CONTROL,
    PurposeCheckRequest,
    PurposeChecksRequest,
    PurposeDecision,
    PurposeDecisions,
    SubjectCollections,
    SubjectConsents,
    SubjectDisclosures,
    SubjectErasure,
    SubjectQuery,
)
from projections.api.problems import PROBLEM_RESPONSES

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)
Ctx = Annotated[ApiContext, Depends(context)]
AnyScope = Annotated[Principal, Depends(require(*Scope))]
Reader = Annotated[Principal, Depends(require(Scope.READER, Scope.AUDITOR, Scope.ADMIN))]
Since = Annotated[datetime | None, Query(description="From (inclusive); default 12 months ago.")]
Until = Annotated[datetime | None, Query(description="To (exclusive); default now.")]
Recipient = Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL)]


class DisclosureQuery(SubjectQuery):
    recipient: str | None = Field(default=None, max_length=200, pattern=NO_CONTROL)
    since: datetime | None = None
    until: datetime | None = None


@router.post("/purpose-check", tags=["subjects"])
async def purpose_check(body: PurposeCheckRequest, ctx: Ctx, who: AnyScope) -> PurposeDecision:
    """May this tenant process this subject's data for this purpose now? Answered from memory
    no older than the consent view was when the request arrived."""
    digest = ctx.keys.digest(who.tenant, body.subject_ref)
    [decision] = await ctx.checks.decide(who.tenant, [(digest, body.purpose)])
    return decision


@router.post("/purpose-checks", tags=["subjects"])
async def purpose_checks(body: PurposeChecksRequest, ctx: Ctx, who: AnyScope) -> PurposeDecisions:
    """The purpose check for a page of (subject, purpose) pairs at once (up to 500): each
    decision is the one ``POST /v1/purpose-check`` gives for its pair."""
    pairs = [(ctx.keys.digest(who.tenant, c.subject_ref), c.purpose) for c in body.checks]
    return PurposeDecisions(decisions=await ctx.checks.decide(who.tenant, pairs))


@router.post("/subject/consents", tags=["subjects"])
async def consents_by_ref(body: SubjectQuery, ctx: Ctx, who: Reader) -> SubjectConsents:
    async with ctx.connection() as conn:
        return await answers.consents(ctx, conn, who, await answers.resolve(ctx, conn, who, body))


@router.get("/subjects/{subject_id}/consents", tags=["subjects"])
async def consents_by_id(subject_id: UUID, ctx: Ctx, who: Reader) -> SubjectConsents:
    async with ctx.connection() as conn:
        return await answers.consents(ctx, conn, who, subject_id)


@router.post("/subject/disclosures", tags=["subjects"])
async def disclosures_by_ref(body: DisclosureQuery, ctx: Ctx, who: Reader) -> SubjectDisclosures:
    async with ctx.connection() as conn:
        subject_id = await answers.resolve(ctx, conn, who, body)
        return await answers.disclosures(
            ctx, conn, who, subject_id, body.recipient, body.since, body.until
        )


@router.get("/subjects/{subject_id}/disclosures", tags=["subjects"])
async def disclosures_by_id(
    subject_id: UUID,
    ctx: Ctx,
    who: Reader,
    recipient: Recipient = None,
    since: Since = None,
    until: Until = None,
) -> SubjectDisclosures:
    async with ctx.connection() as conn:
        return await answers.disclosures(ctx, conn, who, subject_id, recipient, since, until)


@router.post("/subject/collections", tags=["subjects"])
async def collections_by_ref(body: SubjectQuery, ctx: Ctx, who: Reader) -> SubjectCollections:
    async with ctx.connection() as conn:
        return await answers.collections(
            ctx, conn, who, await answers.resolve(ctx, conn, who, body)
        )


@router.get("/subjects/{subject_id}/collections", tags=["subjects"])
async def collections_by_id(subject_id: UUID, ctx: Ctx, who: Reader) -> SubjectCollections:
    async with ctx.connection() as conn:
        return await answers.collections(ctx, conn, who, subject_id)


@router.post("/subject/erasure-status", tags=["subjects"])
async def erasure_by_ref(body: SubjectQuery, ctx: Ctx, who: Reader) -> SubjectErasure:
    async with ctx.connection() as conn:
        return await answers.erasure(ctx, conn, who, await answers.resolve(ctx, conn, who, body))


@router.get("/subjects/{subject_id}/erasure-status", tags=["subjects"])
async def erasure_by_id(subject_id: UUID, ctx: Ctx, who: Reader) -> SubjectErasure:
    async with ctx.connection() as conn:
        return await answers.erasure(ctx, conn, who, subject_id)
