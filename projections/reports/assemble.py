"""Builds a :class:`SubjectReport` from the views and the subject's events in the ledger.

Where each part comes from:

- current consent state, the purpose catalogue and its texts, collections, disclosures, the
  erasure status, restrictions, objections and requests: the views, through
  :class:`projections.queries.Queries` (tenant-scoped);
- consent **history** (every grant and withdrawal, with its text version, source and proving
  event): the subject's events in the ledger, since the consent view keeps only the latest;
  a rectification among them replaces the value it corrects.

Personal values are opened with the subject's key through an :class:`Opener` made for this
report alone, and only when the requester may see them; an erased subject's opener opens
nothing, so its report lists the non-personal facts only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from ledger.domain.subject import Subject
from ledger.domain.values import Sealed
from projections.api.personal import Opener, SubjectKeys
from projections.queries import Conn, DisclosureFilter, Queries
from projections.reports.model import (
    CollectionEntry,
    ConsentChange,
    DisclosureEntry,
    ErasureRequestEntry,
    ErasureStatus,
    HoldEntry,
    ObjectionEntry,
    PurposeConsent,
    RectificationEntry,
    RequestEntry,
    Requester,
    RestrictionEntry,
    SubjectReport,
)

DISCLOSURE_WINDOW = timedelta(days=365)


@dataclass(frozen=True)
class ReportRequest:
    """Who asks for which subject's report, and what the report is called."""

    tenant: str
    subject_id: UUID
    requester: Requester
    may_see_personal: bool
    report_id: str
    generated_at: datetime


@dataclass(frozen=True)
class LedgerFacts:
    """What the report reads from the ledger itself rather than from a view."""

    tenant_name: str
    events: list[Any]


async def assemble(
    queries: Queries, conn: Conn, keys: SubjectKeys, request: ReportRequest, facts: LedgerFacts
) -> SubjectReport:
    """The report; the caller has checked that the subject belongs to ``request.tenant``."""
    tenant, subject_id = request.tenant, request.subject_id
    row = await queries.subject(conn, tenant, subject_id)
    if row is None:
        raise LookupError("no such subject for this tenant")
    opener = keys.opener(subject_id, row["wrapped"], request.may_see_personal, row["kek_id"])
    purposes = await queries.purposes(conn, tenant)
    current = await queries.consents(conn, tenant, subject_id)
    history = consent_history(facts.events, purposes, opener)
    restrictions, objections = await queries.rights(conn, tenant, subject_id)
    corrected = await queries.rectifications(conn, tenant, subject_id)
    asked = await queries.requests(conn, tenant, state="all", subject_id=subject_id)
    return SubjectReport(
        report_id=request.report_id,
        generated_at=request.generated_at,
        tenant=tenant,
        tenant_name=facts.tenant_name,
        subject_id=subject_id,
        personal_data=opener.state,
        subject_ref=opener.open("subject_ref", row["subject_ref"]),
        registered_at=row["registered_at"],
        requester=request.requester,
        purposes=purpose_consents(purposes, current, history),
        collections=await _collections(queries, conn, request, opener, corrected),
        disclosures_since=request.generated_at - DISCLOSURE_WINDOW,
        disclosures=await _disclosures(queries, conn, request, opener, corrected),
        erasure=await _erasure(queries, conn, request),
        restrictions=[opener.model(RestrictionEntry, r, "note") for r in restrictions],
        objections=[opener.model(ObjectionEntry, o, "reason", "reasoning") for o in objections],
        requests=[opener.model(RequestEntry, r, "details", "reason") for r in asked],
    )


def _open(opener: Opener, field: str, value: Sealed | None) -> str | None:
    return opener.open(field, value.to_bytes() if value is not None else None)


def consent_history(
    events: Iterable[Any], purposes: Iterable[Mapping[str, Any]], opener: Opener
) -> dict[str, list[ConsentChange]]:
    """Each purpose's grants and withdrawals in ledger order; a withdrawal names the version
    it withdrew (the one last granted). Rectified fields show their latest value."""
    events = list(events)
    texts = {p["purpose"]: p["texts"] for p in purposes}
    fixes: dict[tuple[str, str], Sealed | None] = {}
    corrections: dict[str, list[RectificationEntry]] = {}
    for e in events:
        if isinstance(e, Subject.PersonalDataRectified):
            fixes[(e.corrects_event_id, e.field)] = e.value
            corrections.setdefault(e.corrects_event_id, []).append(_correction(e))
    granted: dict[str, str] = {}
    out: dict[str, list[ConsentChange]] = {}
    for e in events:
        if isinstance(e, Subject.ConsentGranted):
            granted[e.purpose] = e.consent_text_version
        elif not isinstance(e, Subject.ConsentWithdrawn):
            continue
        version = granted.get(e.purpose, "")
        granting = isinstance(e, Subject.ConsentGranted)

        def value(field: str, stored: Sealed | None, event_id: str = e.event_id) -> str | None:
            return _open(opener, field, fixes.get((event_id, field), stored))

        out.setdefault(e.purpose, []).append(
            ConsentChange(
                action="granted" if granting else "withdrawn",
                consent_text_version=version,
                consent_text=texts.get(e.purpose, {}).get(version),
                occurred_at=e.occurred_at,
                recorded_at=e.timestamp,
                source=e.source,
                event_id=e.event_id,
                producer=e.producer,
                ip_address=value("ip_address", e.ip_address) if granting else None,
                user_agent=value("user_agent", e.user_agent) if granting else None,
                evidence=value("evidence", e.evidence),
                rectifications=corrections.get(e.event_id, []),
            )
        )
    return out


def _correction(e: Any) -> RectificationEntry:
    return RectificationEntry(
        field=e.field,
        event_id=e.event_id,
        rectified_at=e.occurred_at,
        producer=e.producer,
        source=e.source,
    )


def _fixes(corrected: Mapping[str, list[DictRow]], event_id: str) -> list[RectificationEntry]:
    return [
        RectificationEntry(
            field=r["field"],
            event_id=r["event_id"],
            rectified_at=r["rectified_at"],
            producer=r["producer"],
            source=r["source"],
        )
        for r in corrected.get(event_id, ())
    ]


def purpose_consents(
    purposes: Iterable[DictRow],
    current: Iterable[DictRow],
    history: Mapping[str, list[ConsentChange]],
) -> list[PurposeConsent]:
    """Every catalogued purpose, with the consent view's current state and the history."""
    rows = {r["purpose"]: r for r in current}
    out = []
    for p in purposes:
        row = rows.get(p["purpose"])
        out.append(
            PurposeConsent(
                purpose=p["purpose"],
                description=p["description"],
                legal_basis=p["legal_basis"],
                required=p["required"],
                state=row["state"] if row else "never",
                consent_text_version=row["consent_text_version"] if row else None,
                since=row["changed_at"] if row else None,
                event_id=row["event_id"] if row else None,
                history=history.get(p["purpose"], []),
                direct_marketing=p["direct_marketing"],
                allowed_under_restriction=p["allowed_under_restriction"],
            )
        )
    return out


async def _collections(
    queries: Queries,
    conn: Conn,
    request: ReportRequest,
    opener: Opener,
    corrected: Mapping[str, list[DictRow]],
) -> list[CollectionEntry]:
    horizon = queries.horizons["collections"]
    rows = await queries.collections(conn, request.tenant, request.subject_id)
    return [
        opener.model(
            CollectionEntry,
            r,
            "description",
            retained_until=r["last_used_at"] + horizon,
            rectifications=_fixes(corrected, r["event_id"]),
        )
        for r in rows
    ]


async def _disclosures(
    queries: Queries,
    conn: Conn,
    request: ReportRequest,
    opener: Opener,
    corrected: Mapping[str, list[DictRow]],
) -> list[DisclosureEntry]:
    until = request.generated_at
    window = DisclosureFilter(until - DISCLOSURE_WINDOW, until, None, request.subject_id)
    rows = await queries.disclosures(conn, request.tenant, window)
    return [
        opener.model(DisclosureEntry, r, "note", rectifications=_fixes(corrected, r["event_id"]))
        for r in rows
    ]


async def _erasure(queries: Queries, conn: Conn, request: ReportRequest) -> ErasureStatus:
    key, requests, holds = await queries.erasure(conn, request.tenant, request.subject_id)
    if key is None:
        raise LookupError("no key state for this subject")
    return ErasureStatus(
        erased=key["state"] == "shredded",
        key_state=key["state"],
        key_state_since=key["since"],
        legal_holds=[HoldEntry(**h) for h in holds],
        requests=[
            ErasureRequestEntry(
                event_id=r["event_id"],
                source=r["source"],
                requested_at=r["requested_at"],
                due_by=r["due_by"],
                status=r["status"],
                status_at=r["status_at"],
                refusal_reason=r["refusal_reason"],
            )
            for r in requests
        ],
    )
