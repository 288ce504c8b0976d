"""Generating a report: assemble, render, record the generation, then deliver.

Rules this module keeps:

- **Recorded before delivered.** The ``AccessReportGenerated`` event, with the SHA-256 of the
  exact bytes about to be delivered, is saved in the ledger before :func:`generate` returns
  them; if recording fails nothing is delivered. The event's id is the report id printed in
  the report, so a reader of either can find the other.
- **Nothing personal is kept.** The report is never stored and never logged; the event holds
  the format, who asked (scope, and through its producer the API key id), the hash and size.
- **Erased subjects too.** A report of an erased subject is generated (it says erased and lists
  the non-personal facts) and recorded like any other (``Subject.record_report``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, TypeVar
from uuid import UUID

from ledger.application.service import Ledger
from ledger.plumbing.logs import get as get_logger
from ledger.wire.contract import new_event_id
from projections.api.personal import SubjectKeys
from projections.queries import Conn, Queries
from projections.reports import pdf
from projections.reports.assemble import LedgerFacts, ReportRequest, assemble
from projections.reports.model import REPORT_VERSION, Requester, SubjectReport

_T = TypeVar("_T")


class ReportFormat(StrEnum):
    JSON = "json"
    PDF = "pdf"


MEDIA_TYPES = {ReportFormat.JSON: "application/json", ReportFormat.PDF: "application/pdf"}


class LedgerCall(Protocol):
    """Runs a function with a ledger application (in a worker thread, for the API)."""

    def __call__(self, fn: Callable[[Ledger], _T]) -> Awaitable[_T]: ...


class SubjectNotFound(LookupError):
    """The tenant has no such subject."""


@dataclass(frozen=True)
class Delivered:
    content: bytes
    media_type: str
    report_id: str
    sha256: str
    report: SubjectReport


def encode(report: SubjectReport, fmt: ReportFormat) -> bytes:
    if fmt is ReportFormat.PDF:
        return pdf.render(report)
    return report.model_dump_json(indent=2).encode()


async def generate(
    queries: Queries,
    conn: Conn,
    keys: SubjectKeys,
    ledger_call: LedgerCall,
    request: ReportRequest,
    fmt: ReportFormat,
    *,
    producer: str,
) -> Delivered:
    """The report's bytes, once their generation is recorded in the ledger."""
    if await queries.subject(conn, request.tenant, request.subject_id) is None:
        raise SubjectNotFound(f"tenant {request.tenant!r} has no subject {request.subject_id}")
    facts = await ledger_call(lambda ledger: _facts(ledger, request))
    report = await assemble(queries, conn, keys, request, facts)
    content = encode(report, fmt)
    digest = hashlib.sha256(content).hexdigest()
    await ledger_call(lambda ledger: _record(ledger, request, fmt, content, digest, producer))
    get_logger("reports").info(
        "subject_report_generated",
        tenant=request.tenant,
        subject_id=str(request.subject_id),
        report_id=request.report_id,
        format=fmt.value,
        requested_by=request.requester.requested_by,
        size=len(content),
    )
    return Delivered(content, MEDIA_TYPES[fmt], request.report_id, digest, report)


def _record(
    ledger: Ledger,
    request: ReportRequest,
    fmt: ReportFormat,
    content: bytes,
    digest: str,
    producer: str,
) -> None:
    ledger.record_report(
        request.tenant,
        request.subject_id,
        event_id=request.report_id,
        occurred_at=request.generated_at,
        producer=producer,
        format=fmt.value,
        requested_by=request.requester.requested_by,
        scope=request.requester.scope,
        sha256=digest,
        size=len(content),
        report_version=REPORT_VERSION,
    )


def _facts(ledger: Ledger, request: ReportRequest) -> LedgerFacts:
    return LedgerFacts(
        ledger.tenant(request.tenant).name, ledger.subject_events(request.subject_id)
    )


def new_request(
    tenant: str, subject_id: UUID, requester: Requester, *, may_see_personal: bool
) -> ReportRequest:
    """A request with a fresh report id (the id of the event that will record it)."""
    return ReportRequest(
        tenant=tenant,
        subject_id=subject_id,
        requester=requester,
        may_see_personal=may_see_personal,
        report_id=new_event_id(),
        generated_at=datetime.now(UTC),
    )
