"""The data subject: consents, collections, disclosures and erasure, as facts.

Rules the aggregate keeps (each a ``check_*`` method that raises before any event exists, so a
refused command leaves the aggregate as it was):

- nothing is recorded for a subject once erasure has been requested;
- consent is granted only for a catalogued purpose and a defined consent text version;
- a consent is withdrawn only if it is currently granted and the purpose is not required;
- a disclosure under CONSENT needs the purpose's consent to be granted right now; under any
  other basis the purpose must be catalogued under that same basis.

The subject's id is random (never derived from the upstream reference). Personal fields arrive
already :class:`Sealed`; the aggregate never sees plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from ledger.domain.facts import Fact
from ledger.domain.rules import (
    ConsentNotGranted,
    InvalidEvent,
    NoLegalBasis,
    RequiredConsent,
    SubjectErased,
)
from ledger.domain.tenant import Purpose
from ledger.domain.values import LegalBasis, Sealed


@dataclass(frozen=True)
class Consent:
    granted: bool
    version: str
    event_id: str
    at: datetime


class Subject(Aggregate):
    class Registered(Aggregate.Created):
        tenant: str
        subject_ref: Sealed

    class ConsentGranted(Fact):
        purpose: str
        consent_text_version: str
        source: str
        ip_address: Sealed | None
        user_agent: Sealed | None
        evidence: Sealed | None

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.consents[self.purpose] = Consent(
                True, self.consent_text_version, self.event_id, self.occurred_at
            )

    class ConsentWithdrawn(Fact):
        purpose: str
        source: str
        evidence: Sealed | None

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            previous = aggregate.consents[self.purpose]
            aggregate.consents[self.purpose] = Consent(
                False, previous.version, self.event_id, self.occurred_at
            )

    class PersonalDataCollected(Fact):
        purpose: str
        categories: list[str]
        source: str
        description: Sealed | None

        def apply(self, aggregate: Aggregate) -> None:
            pass

    class DataDisclosed(Fact):
        recipient: str
        purpose: str
        categories: list[str]
        legal_basis: LegalBasis
        reference: str
        note: Sealed | None

        def apply(self, aggregate: Aggregate) -> None:
            pass

    class ErasureRequested(Fact):
        source: str
        reason: Sealed | None

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.erasure_requested_at = self.occurred_at

    def __init__(self, tenant: str, subject_ref: Sealed) -> None:
        self.tenant = tenant
        self.subject_ref = subject_ref
        self.consents: dict[str, Consent] = {}
        self.erasure_requested_at: datetime | None = None

    @classmethod
    def register(cls, subject_id: UUID, tenant: str, subject_ref: Sealed) -> Subject:
        """``subject_id`` is random (see ``create_id``) and chosen before the reference is
        sealed, because the seal is bound to it."""
        return cls._create(cls.Registered, id=subject_id, tenant=tenant, subject_ref=subject_ref)

    # Commands. Envelope fields are keyword-only and passed straight into the event.

    def grant_consent(
        self, purpose: Purpose, *, consent_text_version: str, **fields: object
    ) -> None:
        self.check_not_erased()
        purpose.check_version(consent_text_version)
        self.trigger_event(
            self.ConsentGranted,
            purpose=purpose.code,
            consent_text_version=consent_text_version,
            **fields,
        )

    def withdraw_consent(self, purpose: Purpose, **fields: object) -> None:
        self.check_not_erased()
        self.check_withdrawable(purpose)
        self.trigger_event(self.ConsentWithdrawn, purpose=purpose.code, **fields)

    def record_collection(
        self, purpose: Purpose, *, categories: list[str], **fields: object
    ) -> None:
        self.check_not_erased()
        self.check_categories(categories)
        self.trigger_event(
            self.PersonalDataCollected, purpose=purpose.code, categories=categories, **fields
        )

    def record_disclosure(
        self,
        purpose: Purpose,
        *,
        legal_basis: LegalBasis,
        categories: list[str],
        **fields: object,
    ) -> None:
        self.check_not_erased()
        self.check_categories(categories)
        self.check_legal_basis(purpose, legal_basis)
        self.trigger_event(
            self.DataDisclosed,
            purpose=purpose.code,
            legal_basis=legal_basis,
            categories=categories,
            **fields,
        )

    def request_erasure(self, **fields: object) -> None:
        self.check_not_erased()
        self.trigger_event(self.ErasureRequested, **fields)

    # Queries and rules.

    def has_consent(self, purpose: str) -> bool:
        consent = self.consents.get(purpose)
        return consent is not None and consent.granted

    def check_not_erased(self) -> None:
        if self.erasure_requested_at is not None:
            raise SubjectErased(
                f"subject {self.id} has requested erasure; no further events are recorded"
            )

    def check_withdrawable(self, purpose: Purpose) -> None:
        if purpose.required:
            raise RequiredConsent(
                f"purpose {purpose.code!r} is required and cannot be withdrawn on its own; "
                "the subject ends it by erasure"
            )
        if not self.has_consent(purpose.code):
            raise ConsentNotGranted(
                f"subject {self.id} holds no consent for purpose {purpose.code!r} to withdraw"
            )

    def check_legal_basis(self, purpose: Purpose, legal_basis: LegalBasis) -> None:
        if legal_basis is LegalBasis.CONSENT:
            if not self.has_consent(purpose.code):
                raise NoLegalBasis(
                    f"disclosure for purpose {purpose.code!r} claims consent, "
                    f"but subject {self.id} holds no consent for it"
                )
        elif legal_basis is not purpose.legal_basis:
            raise NoLegalBasis(
                f"disclosure for purpose {purpose.code!r} claims {legal_basis.value}, "
                f"but the purpose is catalogued under {purpose.legal_basis.value}"
            )

    @staticmethod
    def check_categories(categories: list[str]) -> None:
        if not categories or any(not c.strip() for c in categories):
            raise InvalidEvent("categories must list at least one non-empty data category")
