"""Signed documents over HTTP: consent receipts, the consent records export, erasure
certificates (``ledger.integrity.receipts``, ``certificates``; formats in docs/audit.md).

Rules these routes keep:

- **Receipts are for the subject**, handed over by the tenant's systems: any key of the tenant
  that may read consents (``reader`` and up) gets them; they hold nothing personal.
  Certificates are for the tenant's admins and auditors.
- **Signed with the documents key** (``LEDGER_DOCUMENT_KEY``, else the checkpoint key on a
  single host); without either the routes answer 503 and say so. ``GET /v1/document-key``
  publishes its verifier key, as ``/v1/checkpoint-key`` publishes the log's. The evidence is
  proven in the newest signed tree; an event newer than that is answered 409
  ``not_yet_checkpointed`` with ``Retry-After``.
- **Built from the event store**, not the projections, so they never lag behind the ledger.
- **Sent exactly as signed**: the body is the signed object itself, never re-serialised
  through the response model (which only documents it), so no field is added or reordered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ledger.integrity import certificates, documents, receipts
from ledger.integrity.checkpoints import Checkpoint
from ledger.integrity.documents import DocumentSigner, signer_of
from ledger.keys.ingest_keys import IngestKeyRow
from ledger.keys.ingest_keys_postgres import PostgresIngestKeyTable
from ledger.storage.postgres import PostgresLedgerRecorder
from ledger.storage.store import LedgerStore
from projections.api.access import Principal, Scope, require
from projections.api.checkpoints import stored_checkpoints
from projections.api.context import ApiContext, context
from projections.api.problems import PROBLEM_RESPONSES, Conflict, NotFound, Unavailable
from projections.reports import certificate_pdf
from projections.reports.service import MEDIA_TYPES, ReportFormat

router = APIRouter(prefix="/v1/subjects", responses=PROBLEM_RESPONSES, tags=["proofs"])
Ctx = Annotated[ApiContext, Depends(context)]
Reader = Annotated[Principal, Depends(require(Scope.READER))]
Staff = Annotated[Principal, Depends(require(Scope.AUDITOR, Scope.ADMIN))]
T = TypeVar("T")


class Claim(BaseModel):
    sequence: int
    event_type: str
    tenant: str | None
    subject_id: str
    event_id: str | None
    recorded_at: str
    purpose: str | None = None


class Evidence(BaseModel):
    claim: Claim = Field(description="What the verifier checks against the event's state.")
    event: dict[str, Any] = Field(description="The event's stored columns (state in base64).")
    leaf_index: int
    proof: list[str] = Field(description="Inclusion proof in the checkpoint's tree, base64.")


class DocumentSignature(BaseModel):
    key: str = Field(description="The log's verifier key (C2SP vkey) that signed it.")
    signature: str = Field(description="Ed25519 over the signed bytes, base64.")


class SignedDocument(BaseModel):
    """A consent receipt or an erasure certificate (docs/audit.md, "Signed documents")."""

    format: str = Field(description="ledger-consent-receipt/v1 or ledger-erasure-certificate/v1.")
    document: dict[str, Any] = Field(
        description="The ISO/IEC TS 27560 receipt (DPV terms), or the certificate's body."
    )
    evidence: list[Evidence]
    checkpoint: str = Field(description="The signed checkpoint (C2SP note) of the proofs.")
    signature: DocumentSignature


def _signer(ctx: ApiContext) -> DocumentSigner:
    s = ctx.settings
    signer = signer_of(s.document_key, s.checkpoint_key, s.log_origin)
    if signer is None:
        raise Unavailable(
            "this server holds no documents key (LEDGER_DOCUMENT_KEY): it cannot sign "
            "receipts or certificates"
        )
    return signer


async def _issue(ctx: ApiContext, make: Callable[[LedgerStore, list[Checkpoint]], T]) -> T:
    newest = await stored_checkpoints(ctx, 1, "tree_size IS NOT NULL")
    try:
        return await run_in_threadpool(ctx.reads.call, lambda store: make(store, newest))
    except (documents.NoSuchSubject, receipts.NoConsent) as exc:
        raise NotFound(str(exc)) from None
    except certificates.NotCompleted as exc:
        raise Conflict(str(exc), reason="erasure_not_completed") from None
    except documents.NotYetCheckpointed as exc:
        wait = int(ctx.settings.checkpoint_interval.total_seconds())
        problem = Conflict(str(exc), reason="not_yet_checkpointed")
        problem.headers["Retry-After"] = str(wait)
        raise problem from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@router.get("/{subject_id}/consents/{purpose}/receipt", response_model=SignedDocument)
async def consent_receipt(
    subject_id: UUID,
    purpose: Annotated[str, Path(min_length=1, max_length=200)],
    ctx: Ctx,
    who: Reader,
) -> Response:
    """The subject's consent receipt for one purpose: the ISO/IEC TS 27560 record (every
    grant and withdrawal), signed, with each event's inclusion proof."""
    signer = _signer(ctx)
    signed = await _issue(
        ctx,
        lambda store, newest: receipts.issue(
            store, signer, newest, who.tenant, subject_id, _now(), purpose
        ),
    )
    return JSONResponse(signed)


@router.get("/{subject_id}/consent-records", response_model=SignedDocument)
async def consent_records(subject_id: UUID, ctx: Ctx, who: Reader) -> Response:
    """Every consent record of the subject, in the receipt's structure: the portable export."""
    signer = _signer(ctx)
    signed = await _issue(
        ctx,
        lambda store, newest: receipts.issue(store, signer, newest, who.tenant, subject_id, _now()),
    )
    return JSONResponse(signed)


def _ingest_keys(store: LedgerStore) -> list[IngestKeyRow]:
    if not isinstance(store, PostgresLedgerRecorder):
        return []
    return PostgresIngestKeyTable(store.datastore).rows()


@router.get(
    "/{subject_id}/erasure-certificate",
    response_model=SignedDocument,
    responses={200: {"content": {"application/pdf": {}}}},
)
async def erasure_certificate(
    subject_id: UUID,
    ctx: Ctx,
    who: Staff,
    format: Annotated[ReportFormat, Query(description="json or pdf.")] = ReportFormat.JSON,
) -> Response:
    """The certificate of the subject's completed erasure: every copy that held its personal
    data and what made it unreadable when, signed, with the events' inclusion proofs."""
    signer = _signer(ctx)
    retention = ctx.settings.ingest_retention
    signed = await _issue(
        ctx,
        lambda store, newest: certificates.issue(
            store, signer, newest, who.tenant, subject_id, _ingest_keys(store), retention
        ),
    )
    if format is ReportFormat.PDF:
        pdf = await run_in_threadpool(certificate_pdf.render, signed)
        return Response(pdf, media_type=MEDIA_TYPES[ReportFormat.PDF])
    return JSONResponse(signed)
