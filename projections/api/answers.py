"""The answers about one subject, shared by the live routes, the replay routes and the CLI.

Each takes a :class:`Reading` — the queries (over the live views or over a replay's, as of
its instant) and the keys — plus a connection and the caller. The tenant always comes from the
caller; a subject of another tenant is not found, exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from uuid import UUID

from psycopg.rows import DictRow

from projections.api.access import Principal
from projections.api.context import Reading
from projections.api.decisions import decide
from projections.api.models import (
    Collection,
    ConsentState,
    Disclosure,
    ErasureRequest,
    LegalHold,
    PurposeDecision,
    Rectification,
    SubjectCollections,
    SubjectConsents,
    SubjectDisclosures,
    SubjectErasure,
    SubjectQuery,
)
from projections.api.personal import Opener
from projections.api.problems import Gone, NotFound
from projections.api.records import disclosure, disclosure_window
from projections.queries import Conn, DisclosureFilter

SETTLED = ("completed", "refused")


async def resolve(ctx: Reading, conn: Conn, who: Principal, body: SubjectQuery) -> UUID:
    digest = ctx.keys.digest(who.tenant, body.subject_ref)
    subject_id = await ctx.queries.subject_by_digest(conn, who.tenant, digest)
    if subject_id == "erased":
        raise Gone("this reference belonged to a subject who has been erased")
    if subject_id is None:
        raise NotFound("no subject with this reference is recorded for your tenant")
    return subject_id


async def subject_header(
    ctx: Reading, conn: Conn, who: Principal, subject_id: UUID
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


async def consents(ctx: Reading, conn: Conn, who: Principal, subject_id: UUID) -> SubjectConsents:
    header, opener = await subject_header(ctx, conn, who, subject_id)
    rows = {r["purpose"]: r for r in await ctx.queries.consents(conn, who.tenant, subject_id)}
    corrected = await ctx.queries.rectifications(conn, who.tenant, subject_id)
    states = []
    for p in await ctx.queries.purposes(conn, who.tenant):
        base = {"purpose": p["purpose"], "required": p["required"], "legal_basis": p["legal_basis"]}
        row = rows.get(p["purpose"])
        if row is None:
            states.append(ConsentState(**base, state="never"))
            continue
        personal = ("evidence", "ip_address", "user_agent")
        fixes = _fixes(corrected, row["event_id"])
        states.append(opener.model(ConsentState, {**row, **base}, *personal, rectifications=fixes))
    return SubjectConsents(**header, consents=states)  # type: ignore[arg-type]


async def disclosures(
    ctx: Reading,
    conn: Conn,
    who: Principal,
    subject_id: UUID,
    recipient: str | None,
    since: datetime | None,
    until: datetime | None,
) -> SubjectDisclosures:
    header, opener = await subject_header(ctx, conn, who, subject_id)
    start, end = disclosure_window(since, until, ctx.queries.now())
    f = DisclosureFilter(start, end, recipient, subject_id)
    rows = await ctx.queries.disclosures(conn, who.tenant, f)
    horizon = ctx.settings.retention_disclosures
    corrected = await ctx.queries.rectifications(conn, who.tenant, subject_id)
    items: list[Disclosure] = [
        disclosure(row, opener, horizon, _fixes(corrected, row["event_id"])) for row in rows
    ]
    return SubjectDisclosures(**header, since=start, until=end, disclosures=items)  # type: ignore[arg-type]


async def collections(
    ctx: Reading, conn: Conn, who: Principal, subject_id: UUID
) -> SubjectCollections:
    header, opener = await subject_header(ctx, conn, who, subject_id)
    horizon = ctx.settings.retention_collections
    corrected = await ctx.queries.rectifications(conn, who.tenant, subject_id)
    items = [
        opener.model(
            Collection,
            r,
            "description",
            retained_until=r["last_used_at"] + horizon,
            rectifications=_fixes(corrected, r["event_id"]),
        )
        for r in await ctx.queries.collections(conn, who.tenant, subject_id)
    ]
    return SubjectCollections(**header, collections=items)  # type: ignore[arg-type]


def _fixes(corrected: Mapping[str, list[DictRow]], event_id: str) -> list[Rectification]:
    return [Rectification(**r) for r in corrected.get(event_id, ())]


async def erasure(ctx: Reading, conn: Conn, who: Principal, subject_id: UUID) -> SubjectErasure:
    header, _ = await subject_header(ctx, conn, who, subject_id)
    key, requests, holds = await ctx.queries.erasure(conn, who.tenant, subject_id)
    if key is None:
        raise NotFound("no such subject is recorded for your tenant")
    now = ctx.queries.now()
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


async def purpose_check_by_id(
    ctx: Reading, conn: Conn, who: Principal, subject_id: UUID, purpose: str
) -> PurposeDecision:
    """The purpose check for a subject named by id; a subject unknown to the caller's tenant
    is not found."""
    await subject_header(ctx, conn, who, subject_id)
    row = await ctx.queries.purpose_check_by_id(conn, who.tenant, subject_id, purpose)
    return decide(purpose, row)
