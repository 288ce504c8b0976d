"""The data subject: consents, collections, disclosures and erasure, as facts.

Rules the aggregate keeps (each a ``check_*`` method that raises before any event exists, so a
refused command leaves the aggregate as it was):

- nothing is recorded for a subject once erasure has been requested (unless the request was
  refused) — except that a subject access report was generated, which holds nothing personal;
- an erasure request is refused, with the reason recorded, while the tenant holds the subject
  under a legal hold; otherwise it is followed at once by ``KeysShredded`` in the same save, and
  the application deletes the subject's data key and reference lookup in that transaction;
- the workflow then moves only forward: requested → keys shredded → processors notified →
  completed, each step an event;
- a shredding found on the ledger topic but missing here (a restored backup) is recorded again
  with its original event id, and the subject counts as erased from then on;
- consent is granted only for a catalogued purpose whose legal basis is CONSENT
  (``Purpose.check_consent_based``) and a defined consent text version;
- a consent is withdrawn only if it is currently granted and the purpose is not required; a
  consent in force is withdrawable even if its purpose is now catalogued under another basis
  (granted before the purpose was re-catalogued, or before the rule above existed);
- a disclosure names the legal basis its purpose is catalogued with (``Purpose.check_basis``),
  and under CONSENT the subject must hold the purpose's consent right now;
- restriction of processing and objection follow ``ledger.domain.rights``.

The subject's id is random (never derived from the upstream reference). Personal fields arrive
already :class:`Sealed`; the aggregate never sees plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.domain import requests, rights
from ledger.domain.facts import Fact
from ledger.domain.rules import (
    ConsentNotGranted,
    ErasureStepOutOfOrder,
    InvalidEvent,
    LegalHoldUnknown,
    NoLegalBasis,
    RequiredConsent,
    SubjectErased,
)
from ledger.domain.tenant import Purpose
from ledger.domain.values import LegalBasis, Sealed

LEDGER_PRODUCER = "ledger"
_STEPS = uuid5(NAMESPACE_URL, "urn:compliance-ledger:erasure-step")


def step_id(request_event_id: str, step: str) -> str:
    """The event id of a workflow step: derived from the request, so a step is recorded once
    however often it is attempted (the ledger's receipts are keyed by event id)."""
    return f"{step}:{uuid5(_STEPS, request_event_id)}"


@dataclass(frozen=True)
class Consent:
    granted: bool
    version: str
    event_id: str
    at: datetime


class Subject(rights.RightsCommands, requests.RequestCommands, Aggregate):
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
            aggregate.correctable[self.event_id] = "ConsentGranted"

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
            aggregate.correctable[self.event_id] = "ConsentWithdrawn"

    class PersonalDataCollected(Fact):
        purpose: str
        categories: list[str]
        source: str
        description: Sealed | None

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.correctable[self.event_id] = "PersonalDataCollected"

    class DataDisclosed(Fact):
        recipient: str
        purpose: str
        categories: list[str]
        legal_basis: LegalBasis
        reference: str
        note: Sealed | None

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.disclosed_to.setdefault(self.recipient, []).append(self.event_id)
            aggregate.correctable[self.event_id] = "DataDisclosed"

    class ErasureRequested(Fact):
        source: str
        reason: Sealed | None

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.erasure_requested_at = self.occurred_at
            aggregate.erasure_request_id = self.event_id
            aggregate.requests[self.event_id] = requests.Request("ERASURE", self.occurred_at)

    class LegalHoldPlaced(Fact):
        hold_reference: str
        note: Sealed | None

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.legal_holds[self.hold_reference] = self.event_id

    class LegalHoldReleased(Fact):
        hold_reference: str

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.legal_holds.pop(self.hold_reference, None)

    # The erasure workflow's own steps. The ledger records them (producer ``ledger``); each
    # names the request it belongs to.

    class ErasureRefused(Fact):
        request_event_id: str
        reason: str
        hold_references: list[str]

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.erasure_requested_at = None
            aggregate.erasure_request_id = None
            aggregate.settle(self.request_event_id)

    class KeysShredded(Fact):
        """The subject's data key and reference lookup were deleted in this event's
        transaction. ``disclosed_to`` maps each recipient to the disclosure event ids, so the
        processors can be told without reading anything personal."""

        request_event_id: str
        disclosed_to: dict[str, list[str]]

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.shredded_at = self.occurred_at
            for request_id, request in list(aggregate.requests.items()):
                if request.kind != "ERASURE":  # nothing is left to answer them with
                    aggregate.settle(request_id)
            if aggregate.erasure_request_id is None:  # re-applied: the request is not here
                aggregate.erasure_request_id = self.request_event_id
                aggregate.erasure_requested_at = self.occurred_at

    class ProcessorsNotified(Fact):
        request_event_id: str
        deliveries: list[dict[str, object]]

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.processors_notified = True

    class ErasureCompleted(Fact):
        request_event_id: str

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.erasure_completed = True
            aggregate.settle(self.request_event_id)

    class AccessReportGenerated(Fact):
        """A subject access report (GDPR art. 15, 20) was generated and delivered. The report
        itself is not kept (it holds personal data); ``sha256`` of the delivered bytes proves
        what was handed out. Carries nothing personal."""

        format: str
        requested_by: str
        scope: str
        sha256: str
        size: int
        report_version: int

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Subject)
            aggregate.answers[self.event_id] = "AccessReportGenerated"

    # Restriction (art. 18) and objection (art. 21): defined in ``ledger.domain.rights``.
    ProcessingRestricted = rights.ProcessingRestricted
    RestrictionLifted = rights.RestrictionLifted
    ObjectionRaised = rights.ObjectionRaised
    CompellingGroundsRecorded = rights.CompellingGroundsRecorded
    PersonalDataRectified = rights.PersonalDataRectified
    ChangeNoticeDue = rights.ChangeNoticeDue
    # The register of requests (art. 12(3)): defined in ``ledger.domain.requests``.
    RequestOpened = requests.RequestOpened
    RequestIdentityVerified = requests.RequestIdentityVerified
    RequestExtended = requests.RequestExtended
    RequestCompleted = requests.RequestCompleted

    def __init__(self, tenant: str, subject_ref: Sealed) -> None:
        self.tenant = tenant
        self.subject_ref = subject_ref
        self.consents: dict[str, Consent] = {}
        self.disclosed_to: dict[str, list[str]] = {}
        self.legal_holds: dict[str, str] = {}
        self.restrictions: dict[str, rights.Restriction] = {}
        self.objections: dict[str, rights.Objection] = {}
        # Events holding personal fields a rectification may correct: event id → kind.
        self.correctable: dict[str, str] = {}
        self.requests: dict[str, requests.Request] = {}
        # Events that may answer a request: event id → kind.
        self.answers: dict[str, str] = {}
        self.erasure_requested_at: datetime | None = None
        self.erasure_request_id: str | None = None
        self.shredded_at: datetime | None = None
        self.processors_notified = False
        self.erasure_completed = False

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
        purpose.check_consent_based()
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

    def request_erasure(self, *, event_id: str, occurred_at: datetime, **fields: object) -> bool:
        """Records the request, then its refusal (legal hold) or the shredding of the keys.
        Returns True if the keys are to be shredded with this save."""
        self.check_not_erased()
        step = {"producer": LEDGER_PRODUCER, "tenant": self.tenant, "occurred_at": occurred_at}
        self.trigger_event(
            self.ErasureRequested, event_id=event_id, occurred_at=occurred_at, **fields
        )
        if self.legal_holds:
            self.trigger_event(
                self.ErasureRefused,
                event_id=step_id(event_id, "refused"),
                request_event_id=event_id,
                reason="legal_hold",
                hold_references=sorted(self.legal_holds),
                **step,
            )
            return False
        self.trigger_event(
            self.KeysShredded,
            event_id=step_id(event_id, "shredded"),
            request_event_id=event_id,
            disclosed_to={r: list(ids) for r, ids in sorted(self.disclosed_to.items())},
            **step,
        )
        return True

    def reapply_shredding(
        self,
        *,
        request_event_id: str,
        disclosed_to: dict[str, list[str]],
        occurred_at: datetime,
    ) -> bool:
        """Records again a shredding that the ledger topic holds but this ledger lacks (a
        database restored from a backup taken before the erasure): ``KeysShredded`` with the
        event id it has on the topic. The subject counts as erased from then on. No legal hold
        is checked: the keys are gone, this only says so. False if already recorded."""
        if self.shredded_at is not None:
            return False
        self.trigger_event(
            self.KeysShredded,
            event_id=step_id(request_event_id, "shredded"),
            request_event_id=request_event_id,
            disclosed_to={r: list(ids) for r, ids in sorted(disclosed_to.items())},
            producer=LEDGER_PRODUCER,
            tenant=self.tenant,
            occurred_at=occurred_at,
        )
        return True

    def record_notification(self, deliveries: list[dict[str, object]], at: datetime) -> None:
        """Processors were told (or could not be, as each delivery says): the workflow's last
        two steps."""
        request = self.erasure_request_id
        if request is None or self.shredded_at is None or self.processors_notified:
            raise ErasureStepOutOfOrder(
                f"subject {self.id} has no shredded erasure awaiting notification"
            )
        step = {"producer": LEDGER_PRODUCER, "tenant": self.tenant, "occurred_at": at}
        self.trigger_event(
            self.ProcessorsNotified,
            event_id=step_id(request, "notified"),
            request_event_id=request,
            deliveries=deliveries,
            **step,
        )
        self.trigger_event(
            self.ErasureCompleted,
            event_id=step_id(request, "completed"),
            request_event_id=request,
            **step,
        )

    def place_legal_hold(self, *, hold_reference: str, **fields: object) -> None:
        self.check_not_erased()
        self.trigger_event(self.LegalHoldPlaced, hold_reference=hold_reference, **fields)

    def release_legal_hold(self, *, hold_reference: str, **fields: object) -> None:
        if hold_reference not in self.legal_holds:
            raise LegalHoldUnknown(
                f"subject {self.id} is under no legal hold {hold_reference!r} to release"
            )
        self.trigger_event(self.LegalHoldReleased, hold_reference=hold_reference, **fields)

    def record_report(self, **fields: object) -> None:
        """Records a report's generation. Unlike every other fact it is accepted after erasure:
        it is the controller's own accountability record (GDPR art. 5(2)), not processing of
        the subject's data, it holds nothing personal, and a report of an erased subject (which
        says so) must be as provable as any other."""
        self.trigger_event(self.AccessReportGenerated, **fields)

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
        """A consent in force may be withdrawn whatever its purpose's basis is now (GDPR art.
        7(3)): one can be in force for a non-consent purpose only from before the purpose was
        re-catalogued or before grants to such purposes were refused."""
        held = self.has_consent(purpose.code)
        if not held:
            purpose.check_consent_based()
        if purpose.required:
            raise RequiredConsent(
                f"purpose {purpose.code!r} is required and cannot be withdrawn on its own; "
                "the subject ends it by erasure"
            )
        if not held:
            raise ConsentNotGranted(
                f"subject {self.id} holds no consent for purpose {purpose.code!r} to withdraw"
            )

    def check_legal_basis(self, purpose: Purpose, legal_basis: LegalBasis) -> None:
        """The disclosure's basis is the purpose's catalogued one; consent must be in force."""
        purpose.check_basis(legal_basis)
        if legal_basis is LegalBasis.CONSENT and not self.has_consent(purpose.code):
            raise NoLegalBasis(
                f"disclosure for purpose {purpose.code!r} claims consent, "
                f"but subject {self.id} holds no consent for it"
            )

    @staticmethod
    def check_categories(categories: list[str]) -> None:
        if not categories or any(not c.strip() for c in categories):
            raise InvalidEvent("categories must list at least one non-empty data category")
