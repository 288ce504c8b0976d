"""Auditor replays over HTTP: the views as they stood at an instant, asked like the live ones.

- ``POST /v1/replays`` (auditor or admin) records a replay as of ``as_of`` and answers 202 at
  once; this server builds it in the background, one build at a time. ``GET
  /v1/replays/{id}`` shows its progress (position read, head, events applied) and, when
  ``ready``, what verifying the chain found on the way.
- A ready replay answers the live routes' questions as of its instant:
  ``/v1/replays/{id}/subjects/{subject_id}/consents|disclosures|collections|erasure-status``
  and ``POST /v1/replays/{id}/purpose-check`` (by reference or by subject id). Answers have
  the live answers' shapes. Personal fields open only where the subject's key still exists
  today: a replay never reopens what has since been erased. A reference whose subject was
  erased since reads ``subject_erased``; ask by subject id for the answer as of the instant.
- A tenant sees only the replays its keys asked for; every answer is scoped to its tenant.
  Replays expire after ``LEDGER_REPLAY_TTL`` (default 24 h); ``DELETE`` drops one sooner.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field, model_validator
from starlette.concurrency import run_in_threadpool

from ledger.plumbing.logs import get as get_logger
from ledger.process.runtime import open_reader
from ledger.process.settings import Settings
from projections.api import answers, register, rights
from projections.api.access import Principal, Scope, require
from projections.api.context import ApiContext, Reading, context
from projections.api.decisions import decide
from projections.api.models import (
    PurposeDecision,
    Register,
    RegisterKind,
    SubjectCollections,
    SubjectConsents,
    SubjectDisclosures,
    SubjectErasure,
    SubjectRights,
)
from projections.api.problems import PROBLEM_RESPONSES, BadRequest, Conflict, NotFound
from projections.replay import service
from projections.replay.registry import ReplayRow, Replays, select_all, select_one

router = APIRouter(prefix="/v1/replays", responses=PROBLEM_RESPONSES, tags=["replays"])
Ctx = Annotated[ApiContext, Depends(context)]
Staff = Annotated[Principal, Depends(require(Scope.AUDITOR, Scope.ADMIN))]
log = get_logger("replay")


class ReplayRequest(BaseModel):
    as_of: AwareDatetime = Field(description="The instant to replay to, with its time zone.")


class ProblemAt(BaseModel):
    position: int
    reason: str
    detail: str


class Verification(BaseModel):
    """The chain as the build read it: every event up to ``up_to``, and the checkpoints."""

    ok: bool
    events: int
    up_to: int
    problems: int
    first_problem: ProblemAt | None
    checkpoints_held: int
    checkpoints_failed: int


class Replay(BaseModel):
    replay_id: str
    as_of: datetime
    status: Literal["queued", "building", "ready", "failed"]
    head: int = Field(description="The ledger's last event when the build started.")
    position: int = Field(description="How far the build has read.")
    applied: int = Field(description="Events recorded by the instant, applied to the views.")
    cut: int = Field(description="The last event applied (recorded at or before as_of).")
    verification: Verification | None
    error: str | None
    seconds: float | None
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime

    @classmethod
    def of(cls, row: ReplayRow, settings: Settings) -> Replay:
        fields = {k: v for k, v in vars(row).items() if k in cls.model_fields}
        return cls(**fields, expires_at=row.created_at + settings.replay_ttl)


class ReplayPurposeCheck(BaseModel):
    """By reference (as the live check) or by subject id (also for subjects erased since)."""

    subject_ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="The subject's reference in your system (personal data: body only).",
    )
    subject_id: UUID | None = None
    purpose: str = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_subject(self) -> ReplayPurposeCheck:
        if (self.subject_ref is None) == (self.subject_id is None):
            raise ValueError("give either subject_ref or subject_id")
        return self


class Builder:
    """Builds the replays this server accepted, one at a time, on a thread of its own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay")

    def submit(self, row: ReplayRow) -> None:
        self._pool.submit(self._build, row)

    def _build(self, row: ReplayRow) -> None:
        try:
            replays = Replays.connect(self.settings)
            reader = open_reader(self.settings)
        except Exception as exc:
            log.warning("replay_cannot_start", replay_id=row.replay_id, error=type(exc).__name__)
            return  # the row stops moving and reads as failed after STALE
        try:
            service.run(self.settings, reader, replays, row, stop=self.stop)
        except Exception:
            return  # service.run logged it and recorded it on the replay's row
        finally:
            reader.close()
            replays.close()

    def close(self) -> None:
        self.stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _builder(request: Request) -> Builder:
    builder: Builder = request.app.state.replay_builder
    return builder


@router.post("", status_code=202)
async def start_replay(
    body: ReplayRequest, ctx: Ctx, who: Staff, request: Request, response: Response
) -> Replay:
    """Replay the ledger to ``as_of``: 202 with the replay's id; poll it until ``ready``."""

    def add() -> ReplayRow:
        with Replays.connect(ctx.settings) as replays:
            return service.start(replays, body.as_of, who.tenant)

    try:
        row = await run_in_threadpool(add)
    except service.UnanswerableInstant as exc:
        raise BadRequest(str(exc)) from None
    _builder(request).submit(row)
    response.headers["Location"] = f"/v1/replays/{row.replay_id}"
    return Replay.of(row, ctx.settings)


@router.get("")
async def list_replays(ctx: Ctx, who: Staff) -> list[Replay]:
    async with ctx.connection() as conn:
        cur = await conn.execute(*select_all(ctx.settings, who.tenant))
        return [Replay.of(ReplayRow.of(r), ctx.settings) for r in await cur.fetchall()]


@router.get("/{replay_id}")
async def get_replay(replay_id: str, ctx: Ctx, who: Staff) -> Replay:
    return Replay.of(await _row(ctx, who, replay_id), ctx.settings)


@router.delete("/{replay_id}", status_code=204)
async def drop_replay(replay_id: str, ctx: Ctx, who: Staff) -> None:
    await _row(ctx, who, replay_id)

    def drop() -> None:
        with Replays.connect(ctx.settings) as replays:
            replays.drop(replay_id)

    await run_in_threadpool(drop)


@router.post("/{replay_id}/purpose-check")
async def replay_purpose_check(
    replay_id: str, body: ReplayPurposeCheck, ctx: Ctx, who: Staff
) -> PurposeDecision:
    """Was processing for this purpose allowed at the replay's instant?"""
    reading = await _ready(ctx, who, replay_id)
    async with ctx.connection() as conn:
        if body.subject_id is not None:
            return await answers.purpose_check_by_id(
                reading, conn, who, body.subject_id, body.purpose
            )
        assert body.subject_ref is not None
        digest = ctx.keys.digest(who.tenant, body.subject_ref)
        row = await reading.queries.purpose_check(conn, who.tenant, digest, body.purpose)
        return decide(body.purpose, row)


@router.get("/{replay_id}/subjects/{subject_id}/consents")
async def replay_consents(
    replay_id: str, subject_id: UUID, ctx: Ctx, who: Staff
) -> SubjectConsents:
    reading = await _ready(ctx, who, replay_id)
    async with ctx.connection() as conn:
        return await answers.consents(reading, conn, who, subject_id)


@router.get("/{replay_id}/subjects/{subject_id}/disclosures")
async def replay_disclosures(
    replay_id: str,
    subject_id: UUID,
    ctx: Ctx,
    who: Staff,
    recipient: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> SubjectDisclosures:
    """Disclosures in [since, until); by default the twelve months up to the instant."""
    reading = await _ready(ctx, who, replay_id)
    async with ctx.connection() as conn:
        return await answers.disclosures(reading, conn, who, subject_id, recipient, since, until)


@router.get("/{replay_id}/subjects/{subject_id}/collections")
async def replay_collections(
    replay_id: str, subject_id: UUID, ctx: Ctx, who: Staff
) -> SubjectCollections:
    reading = await _ready(ctx, who, replay_id)
    async with ctx.connection() as conn:
        return await answers.collections(reading, conn, who, subject_id)


@router.get("/{replay_id}/subjects/{subject_id}/erasure-status")
async def replay_erasure(replay_id: str, subject_id: UUID, ctx: Ctx, who: Staff) -> SubjectErasure:
    reading = await _ready(ctx, who, replay_id)
    async with ctx.connection() as conn:
        return await answers.erasure(reading, conn, who, subject_id)


@router.get("/{replay_id}/subjects/{subject_id}/rights")
async def replay_rights(replay_id: str, subject_id: UUID, ctx: Ctx, who: Staff) -> SubjectRights:
    """The restrictions in place and the objections at the replay's instant."""
    reading = await _ready(ctx, who, replay_id)
    async with ctx.connection() as conn:
        return await rights.rights(reading, conn, who, subject_id)


@router.get("/{replay_id}/requests")
async def replay_register(
    replay_id: str,
    ctx: Ctx,
    who: Staff,
    state: register.State = "all",
    kind: RegisterKind | None = None,
) -> Register:
    """The register of requests as it stood at the replay's instant: due, overdue and due
    soon as of then."""
    reading = await _ready(ctx, who, replay_id)
    async with ctx.connection() as conn:
        rows = await reading.queries.requests(conn, who.tenant, state=state, kind=kind)
    return Register.impersonal(rows)


async def _row(ctx: ApiContext, who: Principal, replay_id: str) -> ReplayRow:
    async with ctx.connection() as conn:
        cur = await conn.execute(*select_one(ctx.settings, replay_id, who.tenant))
        row: Any = await cur.fetchone()
    if row is None:
        raise NotFound("no replay with this id was asked for by your tenant")
    return ReplayRow.of(row)


async def _ready(ctx: ApiContext, who: Principal, replay_id: str) -> Reading:
    row = await _row(ctx, who, replay_id)
    if row.status != "ready":
        detail = f": {row.error}" if row.error else ""
        raise Conflict(f"the replay is {row.status}{detail}; it answers once it is ready")
    return replace(ctx, queries=service.queries(ctx.settings, row))
