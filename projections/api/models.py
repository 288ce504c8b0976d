"""Request and response bodies of the query API (they make its OpenAPI document)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from ledger.domain.values import PURPOSE_CODE
from projections.api.personal import PersonalData

SubjectRef = Field(
    min_length=1,
    max_length=512,
    description="The subject's reference in your system (personal data: sent in the body, "
    "never in a URL, and looked up by keyed digest only).",
)


NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
"""Text a query parameter may hold: no control characters (PostgreSQL text holds no NUL)."""


class SubjectQuery(BaseModel):
    subject_ref: str = SubjectRef


class PurposeCheckRequest(BaseModel):
    subject_ref: str = SubjectRef
    # A purpose code (``ledger.domain.values.PURPOSE_CODE``): anything else names no purpose.
    purpose: str = Field(min_length=1, max_length=100, pattern=PURPOSE_CODE.pattern)


Reason = Literal[
    "consent_granted",
    "consent_withdrawn",
    "no_consent",
    "legal_basis",
    "erasure_requested",
    "processing_restricted",
    "objected",
    "subject_erased",
    "unknown_purpose",
]


class PurposeDecision(BaseModel):
    """May this tenant process this subject's data for this purpose now?"""

    allowed: bool
    reason: Reason
    purpose: str
    legal_basis: str | None = None
    required: bool | None = None
    consent_text_version: str | None = None
    event_id: str | None = Field(
        default=None,
        description="The ledger event that proves the answer (grant, withdrawal, erasure "
        "request, restriction, objection, or the purpose's definition for a non-consent legal "
        "basis).",
    )
    since: datetime | None = Field(default=None, description="When that event happened upstream.")
    subject_id: UUID | None = None


MAX_PURPOSE_CHECKS = 500  # pairs in one POST /v1/purpose-checks


class PurposeChecksRequest(BaseModel):
    checks: list[PurposeCheckRequest] = Field(
        min_length=1,
        max_length=MAX_PURPOSE_CHECKS,
        description=f"Up to {MAX_PURPOSE_CHECKS} (subject, purpose) pairs, answered in one "
        "database round trip. A pair may repeat; each is answered where it stands.",
    )


class PurposeDecisions(BaseModel):
    """One decision per pair asked, in the order asked: each exactly what
    ``POST /v1/purpose-check`` answers for that pair."""

    decisions: list[PurposeDecision]


class Rectification(BaseModel):
    """A correction of one personal field of the entry (GDPR art. 16); the entry shows the
    corrected value."""

    field: str
    event_id: str = Field(description="The PersonalDataRectified event.")
    rectified_at: datetime = Field(description="When it happened upstream.")
    recorded_at: datetime
    producer: str = Field(description="Who sent it: a producer's name, api:<key id> or cli.")
    source: str


def _corrections() -> Any:
    return Field(
        default_factory=list,
        description="Corrections of this entry's personal fields, oldest first.",
    )


class ConsentState(BaseModel):
    purpose: str
    state: Literal["granted", "withdrawn", "never"]
    required: bool
    legal_basis: str
    consent_text_version: str | None = None
    changed_at: datetime | None = Field(default=None, description="When it happened upstream.")
    recorded_at: datetime | None = Field(default=None, description="When the ledger recorded it.")
    first_granted_at: datetime | None = None
    source: str | None = None
    event_id: str | None = Field(default=None, description="The event that proves this state.")
    evidence: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    rectifications: list[Rectification] = _corrections()


class SubjectHeader(BaseModel):
    subject_id: UUID
    subject_ref: str | None = None
    personal_data: PersonalData
    erasure_requested_at: datetime | None = None


class SubjectConsents(SubjectHeader):
    consents: list[ConsentState]


class Disclosure(BaseModel):
    event_id: str
    subject_id: UUID
    recipient: str
    purpose: str
    categories: list[str]
    legal_basis: str
    reference: str
    disclosed_at: datetime
    recorded_at: datetime
    retained_until: datetime
    personal_data: PersonalData
    note: str | None = None
    rectifications: list[Rectification] = _corrections()


class SubjectDisclosures(SubjectHeader):
    since: datetime
    until: datetime
    disclosures: list[Disclosure]


class DisclosurePage(BaseModel):
    since: datetime
    until: datetime
    items: list[Disclosure]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; absent on the last page."
    )


class Collection(BaseModel):
    event_id: str
    purpose: str
    categories: list[str]
    source: str
    collected_at: datetime
    recorded_at: datetime
    retained_until: datetime
    description: str | None = None
    rectifications: list[Rectification] = _corrections()


class SubjectCollections(SubjectHeader):
    collections: list[Collection]


class ErasureRequest(BaseModel):
    event_id: str
    source: str
    requested_at: datetime
    recorded_at: datetime
    due_by: datetime
    overdue: bool
    status: Literal["requested", "shredded", "notified", "completed", "refused"]
    status_at: datetime
    refusal_reason: str | None = None
    hold_references: list[str] | None = None
    deliveries: list[dict[str, Any]] | None = Field(
        default=None,
        description="Once processors were notified: per recipient or processor, the delivery "
        "id, status (delivered, failed, no_endpoint), attempts and last HTTP status.",
    )


class LegalHold(BaseModel):
    hold_reference: str
    placed_at: datetime
    event_id: str


class SubjectErasure(SubjectHeader):
    key_state: Literal["active", "shredded"]
    key_state_since: datetime
    legal_holds: list[LegalHold]
    erasure_requests: list[ErasureRequest]


class ErasureCommand(SubjectQuery):
    """Ask the ledger to erase a subject (admin scope). ``event_id`` makes a retry safe."""

    event_id: str | None = Field(default=None, max_length=200)
    source: str = Field(default="api", min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=10_000)


class ConsentGrantCommand(SubjectQuery):
    """Record that the subject gave consent to a purpose (admin scope): the same fact a
    producer's ``ConsentGranted`` states. ``consent_text_version`` is the text the person
    was shown; it must be one the purpose defines."""

    purpose: str = Field(min_length=1, max_length=100, pattern=PURPOSE_CODE.pattern)
    consent_text_version: str = Field(min_length=1, max_length=100, pattern=NO_CONTROL)
    source: str = Field(default="api", min_length=1, max_length=200, pattern=NO_CONTROL)
    evidence: str | None = Field(default=None, max_length=10_000)
    ip_address: str | None = Field(default=None, max_length=100)
    user_agent: str | None = Field(default=None, max_length=1_000)
    event_id: str | None = Field(default=None, max_length=200)


class ConsentWithdrawalCommand(SubjectQuery):
    """Record that the subject withdrew consent to a purpose (admin scope), as a producer's
    ``ConsentWithdrawn`` does. A required purpose's consent cannot be withdrawn (409)."""

    purpose: str = Field(min_length=1, max_length=100, pattern=PURPOSE_CODE.pattern)
    source: str = Field(default="api", min_length=1, max_length=200, pattern=NO_CONTROL)
    evidence: str | None = Field(default=None, max_length=10_000)
    event_id: str | None = Field(default=None, max_length=200)


class LegalHoldCommand(SubjectQuery):
    hold_reference: str = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=10_000)


RestrictionGrounds = Literal[
    "ACCURACY_CONTESTED", "UNLAWFUL_PROCESSING", "LEGAL_CLAIMS", "OBJECTION_PENDING"
]


class RestrictionCommand(SubjectQuery):
    """Restrict processing of the subject's data (GDPR art. 18) under the tenant's own,
    non-personal reference; no ``purposes``: every purpose."""

    restriction_reference: str = Field(min_length=1, max_length=200)
    grounds: RestrictionGrounds
    purposes: list[str] = Field(default_factory=list, max_length=50)
    source: str = Field(default="api", min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=10_000)
    event_id: str | None = Field(default=None, max_length=200)


class LiftCommand(SubjectQuery):
    restriction_reference: str = Field(min_length=1, max_length=200)
    source: str = Field(default="api", min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=10_000)


class ObjectionCommand(SubjectQuery):
    """The subject objects to processing for a purpose (art. 21)."""

    purpose: str = Field(min_length=1, max_length=100)
    source: str = Field(default="api", min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=10_000)
    event_id: str | None = Field(default=None, max_length=200)


class GroundsCommand(SubjectQuery):
    """The tenant's compelling legitimate grounds that override a standing objection."""

    purpose: str = Field(min_length=1, max_length=100)
    grounds_reference: str = Field(min_length=1, max_length=200)
    reasoning: str = Field(min_length=1, max_length=10_000)


class RectificationCommand(SubjectQuery):
    """Correct one personal field of one of the subject's events (GDPR art. 16): the
    ``ip_address``, ``user_agent`` or ``evidence`` of a grant, the ``evidence`` of a
    withdrawal, the ``description`` of a collection, the ``note`` of a disclosure."""

    corrects_event_id: str = Field(min_length=1, max_length=200)
    field: Literal["ip_address", "user_agent", "evidence", "description", "note"]
    value: str = Field(min_length=1, max_length=10_000)
    source: str = Field(default="api", min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=10_000)
    event_id: str | None = Field(default=None, max_length=200)


RequestKind = Literal["ACCESS", "PORTABILITY", "RECTIFICATION", "RESTRICTION", "OBJECTION"]
RegisterKind = Literal[RequestKind, "ERASURE"]  # an erasure request is listed too


class RequestCommand(SubjectQuery):
    """Open a request in the register (GDPR art. 12(3)): due one month after ``received_at``
    (default now). An erasure request is ``POST /v1/subject/erasure``."""

    kind: RequestKind
    channel: str = Field(min_length=1, max_length=200)
    identity_verified: bool = False
    details: str | None = Field(default=None, max_length=10_000)
    received_at: datetime | None = Field(
        default=None, description="When the request arrived (with a time zone); default now."
    )
    event_id: str | None = Field(
        default=None, max_length=200, description="Becomes the request's id; default random."
    )


class RequestStep(SubjectQuery):
    request_id: str = Field(min_length=1, max_length=200)


class VerifyCommand(RequestStep):
    method: str = Field(min_length=1, max_length=200)


class ExtendCommand(RequestStep):
    months: Literal[1, 2]
    reason: str = Field(min_length=1, max_length=1000, description="Not personal: it is published.")


class CompleteCommand(RequestStep):
    outcome: Literal["FULFILLED", "REFUSED"]
    resolved_by_event_id: str = Field(
        default="",
        max_length=200,
        description="FULFILLED: the subject's event that answered the request.",
    )
    reason: str | None = Field(
        default=None, max_length=10_000, description="REFUSED: why (personal: stored sealed)."
    )


class RegisterEntry(BaseModel):
    request_id: str
    subject_id: UUID
    kind: RegisterKind
    channel: str
    identity_verified: bool
    received_at: datetime
    recorded_at: datetime
    due_at: datetime = Field(description="One month after it arrived, plus any extension.")
    extended_months: int
    extensions: list[dict[str, Any]] = Field(description="Each extension: event, months, reason.")
    status: Literal["open", "fulfilled", "refused", "closed"] = Field(
        description="closed: the subject was erased before it was answered."
    )
    settled_at: datetime | None = None
    resolution_event_id: str | None = Field(
        default=None,
        description="The event that answered it (an erasure: ErasureCompleted; a request "
        "closed by an erasure: its KeysShredded).",
    )
    refusal_code: str | None = Field(
        default=None,
        description="legal_hold: a refused erasure request; subject_erased: a closed request.",
    )
    overdue: bool = Field(description="Open past its due date.")
    due_soon: bool = Field(description="Open and due within the next 7 days.")
    details: str | None = Field(default=None, description="Personal: for auditors and admins.")
    reason: str | None = Field(default=None, description="Personal: a refusal's reason.")


class Register(BaseModel):
    requests: list[RegisterEntry]

    @classmethod
    def impersonal(cls, rows: Sequence[Mapping[str, Any]]) -> Register:
        """The register of a tenant-wide list: a request's details and a refusal's reason
        are left out (a subject's own list opens them)."""
        return cls(requests=[RegisterEntry(**{**r, "details": None, "reason": None}) for r in rows])


class Restriction(BaseModel):
    restriction_reference: str
    grounds: RestrictionGrounds
    purposes: list[str] = Field(description="The purposes it covers; empty: every purpose.")
    restricted_at: datetime
    recorded_at: datetime
    source: str
    event_id: str
    note: str | None = None


class Objection(BaseModel):
    purpose: str
    standing: bool = Field(
        description="Whether it refuses the purpose now: no compelling grounds answered it, "
        "or the purpose is direct marketing."
    )
    objected_at: datetime
    recorded_at: datetime
    source: str
    event_id: str
    reason: str | None = None
    grounds_event_id: str | None = None
    grounds_reference: str | None = None
    grounds_at: datetime | None = None
    reasoning: str | None = None


class SubjectRights(SubjectHeader):
    restrictions: list[Restriction] = Field(description="Restrictions in place, earliest first.")
    objections: list[Objection]


class CommandOutcome(BaseModel):
    """What the ledger did with the command."""

    status: Literal["recorded", "duplicate"]
    event_id: str
    subject_id: UUID | None = None


class Purpose(BaseModel):
    purpose: str
    required: bool
    legal_basis: str
    description: str
    current_version: str = Field(
        description="The consent text version of the latest definition; empty for a purpose "
        "defined without consent text (a legal basis other than CONSENT)."
    )
    texts: dict[str, str] = Field(description="Every consent text defined, by version.")
    defined_at: datetime
    event_id: str
    direct_marketing: bool = Field(
        default=False, description="An objection to it is absolute (GDPR art. 21(2), (3))."
    )
    allowed_under_restriction: bool = Field(
        default=False,
        description="Still allowed while a restriction of processing covers it (art. 18(2)).",
    )


class ViewState(BaseModel):
    name: str
    position: int
    lag: int
    rebuilding: bool


class Readiness(BaseModel):
    ready: bool
    head: int
    max_lag: int
    projections: list[ViewState]
    stopping: bool = Field(
        default=False,
        description="The server is shutting down: not ready, whatever the views say.",
    )
    oldest_write_s: float = Field(
        default=0.0,
        description="Seconds the oldest open write transaction on the ledger's event table "
        "has been open (0: none), across every process.",
    )
    write_stalled: bool = Field(
        default=False,
        description="oldest_write_s is above LEDGER_WRITE_TIMEOUT: the write path is stalled "
        "and the API is not ready.",
    )
