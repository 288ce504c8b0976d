"""Subject-level routes: purpose check, consent state, records and erasure status.

Each question can be asked by upstream reference (``POST /v1/subject/...``, the reference in
the body) or by the pseudonymous subject id the ledger topic carries
(``GET /v1/subjects/{subject_id}/...``). The tenant always comes from the API key; a subject
of another tenant is reported as not found, exactly like one that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from projections.api.access import Principal, Scope, require
from projections.api.context import ApiContext, context
from projections.api.decisions import decide
from projections.api.models import (
    Collection,
    ConsentState,
    Disclosure,
    ErasureRequest,
    LegalHold,
    PurposeCheckRequest,
    PurposeDecision,
    SubjectCollections,
    SubjectConsents,
    SubjectDisclosures,
    SubjectErasure,
    SubjectQuery,
)
from projections.api.personal import Opener
from projections.api.problems import PROBLEM_RESPONSES, Gone, NotFound
from projections.api.records import disclosure, disclosure_window
from projections.queries import Conn, DisclosureFilter

SETTLED = ("completed", "refused")
router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)
Ctx = Annotated[ApiContext, Depends(context)]
AnyScope = Annotated[Principal, Depends(require(*Scope))]
Reader = Annotated[Principal, Depends(require(Scope.READER, Scope.AUDITOR, Scope.ADMIN))]
Since = Annotated[datetime | None, Query(description="From (inclusive); default 12 months ago.")]
Until = Annotated[datetime | None, Query(description="To (exclusive); default now.")]
Recipient = Annotated[str | None, Query(max_length=200)]


class DisclosureQuery(SubjectQuery):
    recipient: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@router.post("/purpose-check", tags=["subjects"])
async def purpose_check(body: PurposeCheckRequest, ctx: Ctx, who: AnyScope) -> PurposeDecision:
    """May this tenant process this subject's data for this purpose now? One indexed query."""
    digest = ctx.keys.digest(who.tenant, body.subject_ref)
    async with ctx.connection() as conn:
        row = await ctx.queries.purpose_check(conn, who.tenant, digest, body.purpose)
    return decide(body.purpose, row)


@router.post("/subject/consents", tags=["subjects"])
async def consents_by_ref(body: SubjectQuery, ctx: Ctx, who: Reader) -> SubjectConsents:
    async with ctx.connection() as conn:
        return await _consents(ctx, conn, who, await _resolve(ctx, conn, who, body))


@router.get("/subjects/{subject_id}/consents", tags=["subjects"])
async def consents_by_id(subject_id: UUID, ctx: Ctx, who: Reader) -> SubjectConsents:
    async with ctx.connection() as conn:
        return await _consents(ctx, conn, who, subject_id)


@router.post("/subject/disclosures", tags=["subjects"])
async def disclosures_by_ref(body: DisclosureQuery, ctx: Ctx, who: Reader) -> SubjectDisclosures:
    async with ctx.connection() as conn:
        subject_id = await _resolve(ctx, conn, who, body)
        return await _disclosures(
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
        return await _disclosures(ctx, conn, who, subject_id, recipient, since, until)


@router.post("/subject/collections", tags=["subjects"])
async def collections_by_ref(body: SubjectQuery, ctx: Ctx, who: Reader) -> SubjectCollections:
    async with ctx.connection() as conn:
        return await _collections(ctx, conn, who, await _resolve(ctx, conn, who, body))


@router.get("/subjects/{subject_id}/collections", tags=["subjects"])
async def collections_by_id(subject_id: UUID, ctx: Ctx, who: Reader) -> SubjectCollections:
    async with ctx.connection() as conn:
        return await _collections(ctx, conn, who, subject_id)


@router.post("/subject/erasure-status", tags=["subjects"])
async def erasure_by_ref(body: SubjectQuery, ctx: Ctx, who: Reader) -> SubjectErasure:
    async with ctx.connection() as conn:
        return await _erasure(ctx, conn, who, await _resolve(ctx, conn, who, body))


@router.get("/subjects/{subject_id}/erasure-status", tags=["subjects"])
async def erasure_by_id(subject_id: UUID, ctx: Ctx, who: Reader) -> SubjectErasure:
    async with ctx.connection() as conn:
        return await _erasure(ctx, conn, who, subject_id)


async def _resolve(ctx: ApiContext, conn: Conn, who: Principal, body: SubjectQuery) -> UUID:
    digest = ctx.keys.digest(who.tenant, body.subject_ref)
    subject_id = await ctx.queries.subject_by_digest(conn, who.tenant, digest)
    if subject_id == "erased":
        raise Gone("this reference belonged to a subject who has been erased")
    if subject_id is None:
        raise NotFound("no subject with this reference is recorded for your tenant")
    return subject_id


async def _subject(
    ctx: ApiContext, conn: Conn, who: Principal, subject_id: UUID
) -> tuple[dict[str, object], Opener]:
    row = await ctx.queries.subject(conn, who.tenant, subject_id)
    if row is None:
        raise NotFound("no such subject is recorded for your tenant")
    opener = ctx.keys.opener(subject_id, row["wrapped"], who.may_see_personal, row["kek_id"])
    header = {
        "subject_id": subject_id,
        "subject_ref": opener.open("subject_ref", row["subject_ref"]),
        "personal_data": opener.state,
        "erasure_requested_at": row["erasure_requested_at"],
    }
    return header, opener


async def _consents(
    ctx: ApiContext, conn: Conn, who: Principal, subject_id: UUID
) -> SubjectConsents:
    header, opener = await _subject(ctx, conn, who, subject_id)
    rows = {r["purpose"]: r for r in await ctx.queries.consents(conn, who.tenant, subject_id)}
    states = []
    for p in await ctx.queries.purposes(conn, who.tenant):
        base = {"purpose": p["purpose"], "required": p["required"], "legal_basis": p["legal_basis"]}
        row = rows.get(p["purpose"])
        if row is None:
            states.append(ConsentState(**base, state="never"))
            continue
        personal = {f: opener.open(f, row[f]) for f in ("evidence", "ip_address", "user_agent")}
        fields = {k: row[k] for k in ConsentState.model_fields if k in row and k not in personal}
        states.append(ConsentState(**{**base, **fields, **personal}))
    return SubjectConsents(**header, consents=states)  # type: ignore[arg-type]


async def _disclosures(
    ctx: ApiContext,
    conn: Conn,
    who: Principal,
    subject_id: UUID,
    recipient: str | None,
    since: datetime | None,
    until: datetime | None,
) -> SubjectDisclosures:
    header, opener = await _subject(ctx, conn, who, subject_id)
    start, end = disclosure_window(since, until)
    f = DisclosureFilter(start, end, recipient, subject_id)
    rows = await ctx.queries.disclosures(conn, who.tenant, f)
    horizon = ctx.settings.retention_disclosures
    items: list[Disclosure] = [disclosure(row, opener, horizon) for row in rows]
    return SubjectDisclosures(**header, since=start, until=end, disclosures=items)  # type: ignore[arg-type]


async def _collections(
    ctx: ApiContext, conn: Conn, who: Principal, subject_id: UUID
) -> SubjectCollections:
    header, opener = await _subject(ctx, conn, who, subject_id)
    horizon = ctx.settings.retention_collections
    items = [
        Collection(
            event_id=r["event_id"],
            purpose=r["purpose"],
            categories=r["categories"],
            source=r["source"],
            collected_at=r["collected_at"],
            recorded_at=r["recorded_at"],
            retained_until=r["last_used_at"] + horizon,
            description=opener.open("description", r["description"]),
        )
        for r in await ctx.queries.collections(conn, who.tenant, subject_id)
    ]
    return SubjectCollections(**header, collections=items)  # type: ignore[arg-type]


async def _erasure(ctx: ApiContext, conn: Conn, who: Principal, subject_id: UUID) -> SubjectErasure:
    header, _ = await _subject(ctx, conn, who, subject_id)
    key, requests, holds = await ctx.queries.erasure(conn, who.tenant, subject_id)
    if key is None:
        raise NotFound("no such subject is recorded for your tenant")
    now = datetime.now(UTC)
    return SubjectErasure(
        **header,  # type: ignore[arg-type]
        key_state=key["state"],
        key_state_since=key["since"],
        legal_holds=[LegalHold(**h) for h in holds],
        erasure_requests=[
            ErasureRequest(**r, overdue=r["status"] not in SETTLED and r["due_by"] < now)
            for r in requests
        ],
    )
