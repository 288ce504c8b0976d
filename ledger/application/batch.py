"""What recording a batch works with: each command's outcome, and the state of one attempt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.storage.store import Receipt, Shredded, SubjectRef, WrappedKey

SUBJECT_COMMANDS = {
    "ConsentGranted": "grant_consent",
    "ConsentWithdrawn": "withdraw_consent",
    "PersonalDataCollected": "record_collection",
    "DataDisclosed": "record_disclosure",
    "ObjectionRaised": "object_to",
    "CompellingGroundsRecorded": "record_compelling_grounds",
}
# Commands about the subject as a whole, not one purpose.
ERASURE_COMMANDS = {
    "LegalHoldPlaced": "place_legal_hold",
    "LegalHoldReleased": "release_legal_hold",
    "RestrictionLifted": "lift_restriction",
    "PersonalDataRectified": "rectify",
    "RequestOpened": "open_request",
    "RequestIdentityVerified": "verify_request",
    "RequestExtended": "extend_request",
    "RequestCompleted": "complete_request",
}
# Commands for a subject the ledger must already know: they answer something it did.
EXISTING_SUBJECT_ONLY = frozenset(
    {
        "ErasureRequested",
        "ProcessingRestricted",
        "RestrictionLifted",
        "ObjectionRaised",
        "CompellingGroundsRecorded",
        "PersonalDataRectified",
        "RequestIdentityVerified",
        "RequestExtended",
        "RequestCompleted",
    }
)
BATCH_ATTEMPTS = 2


@dataclass(frozen=True)
class Outcome:
    status: Literal["recorded", "duplicate", "rejected"]
    reason: str | None = None
    detail: str | None = None
    aggregate_id: UUID | None = None
    version: int | None = None


@dataclass
class _Batch:
    """What one attempt at a batch has produced so far."""

    seen: set[tuple[str, str]]
    touched: dict[UUID, Aggregate] = field(default_factory=dict)
    new_subjects: dict[UUID, tuple[WrappedKey, SubjectRef]] = field(default_factory=dict)
    receipts: list[Receipt] = field(default_factory=list)
    erased: set[tuple[str, bytes]] = field(default_factory=set)
    shredded: list[Shredded] = field(default_factory=list)

    def aggregates(self) -> list[Aggregate]:
        return [a for a in self.touched.values() if a.pending_events]

    def saved_new_subjects(self) -> list[tuple[WrappedKey, SubjectRef]]:
        # A subject created in this batch whose commands were all refused is not saved.
        return [row for i, row in self.new_subjects.items() if i in self.touched]
