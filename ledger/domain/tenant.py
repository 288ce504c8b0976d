"""The tenant (a data controller), its purpose catalogue and its ingest policy.

The ingest policy says whether the tenant's producers may send personal fields in clear on
the ingest topic. It is refused unless an ``IngestPolicySet`` event of the tenant allows it
(``ledger tenants add --allow-plaintext-ingest``, ``ledger tenants plaintext-ingest``), so
every change of the policy is a fact in the ledger, with its time.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.domain.facts import Fact
from ledger.domain.rules import (
    ConsentTextConflict,
    InvalidEvent,
    NoLegalBasis,
    PlaintextPersonalData,
    PurposeNotConsentBased,
    UnknownConsentVersion,
    UnknownPurpose,
)
from ledger.domain.values import PURPOSE_CODE, TENANT_CODE, LegalBasis

TENANT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:compliance-ledger:tenant")


def check_consent_text(basis: LegalBasis, text: str, version: str) -> None:
    """A purpose under legal basis CONSENT needs the text subjects agree to and its version.
    A purpose under another basis asks no one's consent, so it may leave both empty ("": the
    schema keeps them strings, so every reader of the topics still decodes them), or give
    both."""
    if basis is LegalBasis.CONSENT and (text == "" or version == ""):
        raise InvalidEvent(
            "a purpose under legal_basis CONSENT needs consent_text and consent_text_version "
            "(only a purpose under another basis may leave them empty)"
        )
    if (text == "") != (version == ""):
        raise InvalidEvent(
            "consent_text and consent_text_version go together: give both, or leave both "
            "empty for a purpose under another legal basis than CONSENT"
        )


@dataclass
class Purpose:
    """A catalogue entry. Consent text versions accumulate and never change once defined."""

    code: str
    required: bool
    legal_basis: LegalBasis
    description: str
    texts: dict[str, str] = field(default_factory=dict)  # version -> consent text
    # Direct marketing: an objection to it is absolute (GDPR art. 21(2), (3)).
    direct_marketing: bool = False
    # Still allowed while the subject's processing is restricted (art. 18(2): storage, legal
    # claims).
    allowed_under_restriction: bool = False

    def check_version(self, version: str) -> None:
        if version not in self.texts:
            raise UnknownConsentVersion(
                f"purpose {self.code!r} has no consent text version {version!r}"
            )

    def check_consent_based(self) -> None:
        """Consent is recorded only for a purpose catalogued under CONSENT. Consent is a legal
        basis of its own (GDPR art. 6(1)(a), 7): a "consent" to processing that rests on
        contract or legitimate interests would tell the subject and the auditor that saying no
        stops it, which it does not."""
        if self.legal_basis is not LegalBasis.CONSENT:
            raise PurposeNotConsentBased(
                f"purpose {self.code!r} is catalogued under {self.legal_basis.value}, "
                "not CONSENT: no consent is recorded for it"
            )

    def check_basis(self, legal_basis: LegalBasis) -> None:
        """A disclosure names the basis the purpose is catalogued with, and no other."""
        if legal_basis is not self.legal_basis:
            raise NoLegalBasis(
                f"disclosure for purpose {self.code!r} claims {legal_basis.value}, "
                f"but the purpose is catalogued under {self.legal_basis.value}"
            )


class Tenant(Aggregate):
    """A data controller using the ledger; its id is derived from its (non-personal) code."""

    class Registered(Aggregate.Created):
        code: str
        name: str

    class PurposeDefined(Fact):
        purpose: str
        consent_text: str
        consent_text_version: str
        required: bool
        legal_basis: LegalBasis
        description: str
        # Added with the rights of art. 18 and 21; events stored before read them as False.
        direct_marketing: bool = False
        allowed_under_restriction: bool = False

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Tenant)
            entry = aggregate.purposes.get(self.purpose)
            texts = dict(entry.texts) if entry else {}
            if self.consent_text_version:  # "" for a purpose that asks no consent
                texts[self.consent_text_version] = self.consent_text
            aggregate.purposes[self.purpose] = Purpose(
                code=self.purpose,
                required=self.required,
                legal_basis=self.legal_basis,
                description=self.description,
                texts=texts,
                direct_marketing=self.direct_marketing,
                allowed_under_restriction=self.allowed_under_restriction,
            )

    class IngestPolicySet(Aggregate.Event):
        """An operator allowed or refused personal fields in clear on the ingest topic."""

        tenant: str
        allow_plaintext_ingest: bool

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Tenant)
            aggregate.allow_plaintext_ingest = self.allow_plaintext_ingest

    class SubjectReportPolicySet(Aggregate.Event):
        """An operator allowed or refused subject access reports requested on the subject's
        behalf by the tenant's own portal (a ``producer`` API key)."""

        tenant: str
        allow_subject_reports: bool

        def apply(self, aggregate: Aggregate) -> None:
            assert isinstance(aggregate, Tenant)
            aggregate.allow_subject_reports = self.allow_subject_reports

    def __init__(self, code: str, name: str) -> None:
        self.code = code
        self.name = name
        self.purposes: dict[str, Purpose] = {}
        self.allow_plaintext_ingest = False
        self.allow_subject_reports = False

    @staticmethod
    def create_id(code: str, name: str = "") -> UUID:
        return Tenant.id_for(code)

    @staticmethod
    def id_for(code: str) -> UUID:
        return uuid5(TENANT_NAMESPACE, code)

    @classmethod
    def register(cls, code: str, name: str, *, allow_plaintext_ingest: bool = False) -> Tenant:
        if not TENANT_CODE.match(code):
            raise InvalidEvent("tenant code must be 1-63 lower-case letters, digits, '-' or '_'")
        tenant = cls._create(cls.Registered, code=code, name=name or code)
        tenant.set_ingest_policy(allow_plaintext_ingest=allow_plaintext_ingest)
        return tenant

    def set_ingest_policy(self, *, allow_plaintext_ingest: bool) -> bool:
        """Records the policy if it changes it; returns whether it did."""
        if allow_plaintext_ingest == self.allow_plaintext_ingest:
            return False
        self.trigger_event(
            self.IngestPolicySet, tenant=self.code, allow_plaintext_ingest=allow_plaintext_ingest
        )
        return True

    def set_subject_reports(self, *, allow: bool) -> bool:
        """Records the self-service report policy if it changes it; returns whether it did."""
        if allow == self.allow_subject_reports:
            return False
        self.trigger_event(
            self.SubjectReportPolicySet, tenant=self.code, allow_subject_reports=allow
        )
        return True

    def check_ingest_policy(self, plaintext_fields: Collection[str]) -> None:
        """Refuses personal fields that arrived in clear, unless the tenant allows them."""
        if plaintext_fields and not self.allow_plaintext_ingest:
            raise PlaintextPersonalData(
                f"tenant {self.code!r} does not accept personal fields in clear on the ingest "
                f"topic ({', '.join(sorted(plaintext_fields))}); seal them to the ledger's "
                "ingest key"
            )

    def purpose(self, code: str) -> Purpose:
        try:
            return self.purposes[code]
        except KeyError:
            raise UnknownPurpose(f"tenant {self.code!r} has no purpose {code!r}") from None

    def define_purpose(
        self,
        *,
        purpose: str,
        consent_text: str,
        consent_text_version: str,
        legal_basis: LegalBasis,
        required: bool = False,
        description: str = "",
        direct_marketing: bool = False,
        allowed_under_restriction: bool = False,
        **envelope: object,
    ) -> None:
        self.check_purpose_code(purpose)
        check_consent_text(legal_basis, consent_text, consent_text_version)
        self.check_text_unchanged(purpose, consent_text_version, consent_text)
        self.trigger_event(
            self.PurposeDefined,
            purpose=purpose,
            consent_text=consent_text,
            consent_text_version=consent_text_version,
            required=required,
            legal_basis=legal_basis,
            description=description,
            direct_marketing=direct_marketing,
            allowed_under_restriction=allowed_under_restriction,
            **envelope,
        )

    @staticmethod
    def check_purpose_code(code: str) -> None:
        if not PURPOSE_CODE.match(code):
            raise InvalidEvent(
                "purpose code must be 1-100 lower-case letters, digits, '.', '-' or '_'"
            )

    def check_text_unchanged(self, purpose: str, version: str, text: str) -> None:
        entry = self.purposes.get(purpose)
        if entry and version in entry.texts and entry.texts[version] != text:
            raise ConsentTextConflict(
                f"consent text version {version!r} of purpose {purpose!r} is already defined "
                "with a different text; define a new version instead"
            )
