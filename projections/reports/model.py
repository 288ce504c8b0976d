"""The subject access report: one subject's file as the ledger knows it, versioned.

Rules the model keeps:

- **Versioned.** ``report_version`` is the version of this schema; fields are only added
  (with defaults) within a version. ``docs/subject-report.schema.json`` is generated from these
  classes (``python -m projections.reports.schema``) and a test keeps it equal.
- **Personal values only where allowed.** Every field documented as personal is null unless
  ``personal_data`` is ``visible``: for staff keys that may see personal data, and for the
  subject's own request through the tenant's portal. For an erased subject they are null for
  everyone, while the non-personal facts (purposes, texts, times, recipients) are still listed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from projections.api.personal import PersonalData

REPORT_VERSION: Literal[1] = 1
SCHEMA_ID = "https://compliance-ledger.dev/schemas/subject-report/v1.json"
Personal = Field(default=None, description="Personal: null unless personal_data is visible.")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RectificationEntry(_Part):
    """A correction of one personal field of the entry (GDPR art. 16); the entry shows the
    corrected value."""

    field: str
    event_id: str = Field(description="The PersonalDataRectified event.")
    rectified_at: datetime
    producer: str
    source: str


def _corrections() -> Any:
    return Field(default_factory=list, description="Corrections of its personal fields.")


class ConsentChange(_Part):
    """One grant or withdrawal, as recorded in the ledger."""

    action: Literal["granted", "withdrawn"]
    consent_text_version: str = Field(
        description="The text version agreed to; for a withdrawal, the version withdrawn."
    )
    consent_text: str | None = Field(
        description="That version's text from the purpose catalogue (null if not catalogued)."
    )
    occurred_at: datetime = Field(description="When it happened upstream.")
    recorded_at: datetime = Field(description="When the ledger recorded it.")
    source: str
    event_id: str = Field(description="The ledger event that proves it.")
    producer: str
    ip_address: str | None = Personal
    user_agent: str | None = Personal
    evidence: str | None = Personal
    rectifications: list[RectificationEntry] = _corrections()


class PurposeConsent(_Part):
    """A purpose of the tenant's catalogue, the subject's current state and its history."""

    purpose: str
    description: str
    legal_basis: str
    required: bool
    state: Literal["granted", "withdrawn", "never"] = Field(
        description="Current state, from the consent view."
    )
    consent_text_version: str | None = None
    since: datetime | None = Field(default=None, description="When the current state began.")
    event_id: str | None = Field(default=None, description="The event proving the state.")
    history: list[ConsentChange] = Field(description="Every grant and withdrawal, oldest first.")
    direct_marketing: bool = Field(
        default=False, description="An objection to it is absolute (GDPR art. 21(3))."
    )
    allowed_under_restriction: bool = Field(
        default=False, description="Still allowed while processing is restricted (art. 18(2))."
    )


class CollectionEntry(_Part):
    event_id: str
    purpose: str
    categories: list[str]
    source: str
    collected_at: datetime
    retained_until: datetime
    description: str | None = Personal
    rectifications: list[RectificationEntry] = _corrections()


class DisclosureEntry(_Part):
    event_id: str
    recipient: str
    purpose: str
    categories: list[str]
    legal_basis: str
    reference: str
    disclosed_at: datetime
    note: str | None = Personal
    rectifications: list[RectificationEntry] = _corrections()


class HoldEntry(_Part):
    hold_reference: str
    placed_at: datetime
    event_id: str


class ErasureRequestEntry(_Part):
    event_id: str
    source: str
    requested_at: datetime
    due_by: datetime
    status: str
    status_at: datetime
    refusal_reason: str | None = None


class ErasureStatus(_Part):
    erased: bool = Field(description="True once the subject's key is shredded.")
    key_state: Literal["active", "shredded"]
    key_state_since: datetime
    legal_holds: list[HoldEntry]
    requests: list[ErasureRequestEntry]


class RestrictionEntry(_Part):
    """A restriction of processing in place (GDPR art. 18)."""

    restriction_reference: str
    grounds: str = Field(description="Art. 18(1): ACCURACY_CONTESTED, UNLAWFUL_PROCESSING, ...")
    purposes: list[str] = Field(description="The purposes it covers; empty: every purpose.")
    restricted_at: datetime
    source: str
    event_id: str
    note: str | None = Personal


class ObjectionEntry(_Part):
    """The subject's objection to a purpose (art. 21), and the grounds that answered it."""

    purpose: str
    standing: bool = Field(description="Whether it refuses the purpose now.")
    objected_at: datetime
    source: str
    event_id: str
    reason: str | None = Personal
    grounds_event_id: str | None = None
    grounds_reference: str | None = None
    grounds_at: datetime | None = None
    reasoning: str | None = Personal


class RequestEntry(_Part):
    """A request the subject made, from the register (GDPR art. 12(3))."""

    request_id: str
    kind: str
    channel: str
    received_at: datetime
    due_at: datetime
    extended_months: int
    status: Literal["open", "fulfilled", "refused", "closed"]
    settled_at: datetime | None = None
    resolution_event_id: str | None = None
    details: str | None = Personal
    reason: str | None = Personal


class Requester(_Part):
    requested_by: Literal["staff", "subject"]
    scope: str = Field(description="auditor, admin, producer (the tenant's portal) or cli.")
    key_id: str | None = Field(default=None, description="The API key's id, if by API.")


class SubjectReport(_Part):
    """Everything the ledger holds about one data subject of one tenant."""

    model_config = ConfigDict(
        extra="forbid",
        title="Subject access report",
        json_schema_extra={"$id": SCHEMA_ID},
    )

    report_version: Literal[1] = REPORT_VERSION
    report_id: str = Field(
        description="The id of the AccessReportGenerated event recording this report."
    )
    generated_at: datetime
    tenant: str
    tenant_name: str
    subject_id: UUID = Field(description="The ledger's pseudonymous id of the subject.")
    personal_data: PersonalData = Field(
        description="visible: personal fields are opened; withheld: not for this requester; "
        "erased: the subject's key is shredded and nobody can open them."
    )
    subject_ref: str | None = Field(default=None, description="Personal: the upstream reference.")
    registered_at: datetime
    requester: Requester
    purposes: list[PurposeConsent]
    collections: list[CollectionEntry] = Field(
        description="The record of collection, kept one year from last use."
    )
    disclosures_since: datetime
    disclosures: list[DisclosureEntry] = Field(description="Disclosures in the last 12 months.")
    erasure: ErasureStatus
    restrictions: list[RestrictionEntry] = Field(
        default_factory=list, description="Restrictions of processing in place, earliest first."
    )
    objections: list[ObjectionEntry] = Field(
        default_factory=list, description="Objections, by purpose, with their answers."
    )
    requests: list[RequestEntry] = Field(
        default_factory=list, description="Every request the subject made, by due date."
    )
