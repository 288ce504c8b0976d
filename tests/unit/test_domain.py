"""The aggregates' rules, with no storage and no crypto: Tenant and Subject on their own."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ledger.domain.rules import (
    ConsentNotGranted,
    ConsentTextConflict,
    InvalidEvent,
    NoLegalBasis,
    PlaintextPersonalData,
    PurposeNotConsentBased,
    RequiredConsent,
    RuleViolation,
    SubjectErased,
    UnknownConsentVersion,
    UnknownPurpose,
)
from ledger.domain.subject import Subject
from ledger.domain.tenant import Tenant
from ledger.domain.values import LegalBasis, Sealed
from tests.builders import CONSENT_TEXT, OCCURRED_AT

SEALED_REF = Sealed("A256GCM-subject-v1", "k", b"\x00" * 12, b"\x01" * 32)


def envelope() -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": OCCURRED_AT,
        "producer": "crm",
        "tenant": "acme",
    }


def define(
    tenant: Tenant,
    purpose: str = "newsletter",
    version: str = "1",
    *,
    text: str = CONSENT_TEXT,
    basis: LegalBasis = LegalBasis.CONSENT,
    required: bool = False,
) -> None:
    tenant.define_purpose(
        purpose=purpose,
        consent_text=text,
        consent_text_version=version,
        legal_basis=basis,
        required=required,
        **envelope(),
    )


@pytest.fixture
def tenant() -> Tenant:
    tenant = Tenant.register("acme", "Acme Ltd")
    define(tenant, "newsletter")
    define(tenant, "terms", required=True)
    define(tenant, "billing", basis=LegalBasis.CONTRACT)
    return tenant


@pytest.fixture
def subject() -> Subject:
    return Subject.register(uuid.uuid4(), "acme", SEALED_REF)


def grant(
    subject: Subject, tenant: Tenant, purpose: str = "newsletter", version: str = "1"
) -> None:
    subject.grant_consent(
        tenant.purpose(purpose),
        consent_text_version=version,
        source="signup-form",
        ip_address=None,
        user_agent=None,
        evidence=None,
        **envelope(),
    )


def withdraw(subject: Subject, tenant: Tenant, purpose: str = "newsletter") -> None:
    subject.withdraw_consent(
        tenant.purpose(purpose), source="app-settings", evidence=None, **envelope()
    )


def disclose(
    subject: Subject,
    tenant: Tenant,
    purpose: str = "newsletter",
    basis: LegalBasis = LegalBasis.CONSENT,
    categories: list[str] | None = None,
) -> None:
    subject.record_disclosure(
        tenant.purpose(purpose),
        legal_basis=basis,
        categories=["contact.email"] if categories is None else categories,
        recipient="mailer-inc",
        reference="",
        note=None,
        **envelope(),
    )


def collect(
    subject: Subject,
    tenant: Tenant,
    purpose: str = "newsletter",
    categories: list[str] | None = None,
) -> None:
    subject.record_collection(
        tenant.purpose(purpose),
        categories=["contact.email"] if categories is None else categories,
        source="data-subject",
        description=None,
        **envelope(),
    )


def erase(subject: Subject, tenant: Tenant) -> None:
    subject.request_erasure(source="email", reason=None, **envelope())


def test_grant_needs_a_defined_consent_text_version(subject: Subject, tenant: Tenant) -> None:
    with pytest.raises(UnknownConsentVersion):
        grant(subject, tenant, version="2")
    assert not subject.has_consent("newsletter")

    define(tenant, "newsletter", "2", text="Send me the weekly newsletter.")
    grant(subject, tenant, version="2")
    assert subject.has_consent("newsletter")
    assert subject.consents["newsletter"].version == "2"


def test_an_uncatalogued_purpose_is_unknown(tenant: Tenant) -> None:
    with pytest.raises(UnknownPurpose):
        tenant.purpose("profiling")


def test_withdrawal_of_a_required_purpose_is_refused(subject: Subject, tenant: Tenant) -> None:
    grant(subject, tenant, "terms")
    with pytest.raises(RequiredConsent):
        withdraw(subject, tenant, "terms")
    assert subject.has_consent("terms")


def test_withdrawal_needs_a_current_consent(subject: Subject, tenant: Tenant) -> None:
    with pytest.raises(ConsentNotGranted):
        withdraw(subject, tenant)
    grant(subject, tenant)
    withdraw(subject, tenant)
    assert not subject.has_consent("newsletter")
    with pytest.raises(ConsentNotGranted):
        withdraw(subject, tenant)


def test_disclosure_under_consent_needs_the_consent_right_now(
    subject: Subject, tenant: Tenant
) -> None:
    with pytest.raises(NoLegalBasis):
        disclose(subject, tenant)
    grant(subject, tenant)
    disclose(subject, tenant)
    withdraw(subject, tenant)
    with pytest.raises(NoLegalBasis):
        disclose(subject, tenant)


def test_disclosure_under_another_basis_needs_the_catalogued_basis(
    subject: Subject, tenant: Tenant
) -> None:
    disclose(subject, tenant, "billing", LegalBasis.CONTRACT)  # no consent needed
    with pytest.raises(NoLegalBasis):
        disclose(subject, tenant, "billing", LegalBasis.LEGITIMATE_INTERESTS)
    grant(subject, tenant)
    with pytest.raises(NoLegalBasis):
        disclose(subject, tenant, "newsletter", LegalBasis.CONTRACT)
    with pytest.raises(NoLegalBasis, match="catalogued under CONTRACT"):
        disclose(subject, tenant, "billing", LegalBasis.CONSENT)  # consent is another basis


def test_consent_is_granted_only_to_a_purpose_catalogued_under_consent(
    subject: Subject, tenant: Tenant
) -> None:
    with pytest.raises(PurposeNotConsentBased, match="catalogued under CONTRACT"):
        grant(subject, tenant, "billing")
    assert not subject.has_consent("billing") and not subject.pending_events[1:]
    with pytest.raises(PurposeNotConsentBased):
        withdraw(subject, tenant, "billing")


def test_a_consent_in_force_stays_withdrawable_when_its_purpose_changes_basis(
    subject: Subject, tenant: Tenant
) -> None:
    grant(subject, tenant)
    define(tenant, "newsletter", basis=LegalBasis.LEGITIMATE_INTERESTS)

    with pytest.raises(PurposeNotConsentBased):
        grant(subject, tenant)
    with pytest.raises(NoLegalBasis):
        disclose(subject, tenant, "newsletter", LegalBasis.CONSENT)
    disclose(subject, tenant, "newsletter", LegalBasis.LEGITIMATE_INTERESTS)
    withdraw(subject, tenant)
    assert not subject.has_consent("newsletter")
    with pytest.raises(PurposeNotConsentBased):
        withdraw(subject, tenant)


@pytest.mark.parametrize("categories", [[], [" "]])
def test_collection_and_disclosure_need_categories(
    subject: Subject, tenant: Tenant, categories: list[str]
) -> None:
    with pytest.raises(InvalidEvent):
        collect(subject, tenant, categories=categories)
    with pytest.raises(InvalidEvent):
        disclose(subject, tenant, "billing", LegalBasis.CONTRACT, categories=categories)


ANY_COMMAND: dict[str, Callable[[Subject, Tenant], None]] = {
    "grant": grant,
    "withdraw": withdraw,
    "collect": collect,
    "disclose": lambda s, t: disclose(s, t, "billing", LegalBasis.CONTRACT),
    "erase": erase,
}


@pytest.mark.parametrize("command", sorted(ANY_COMMAND))
def test_nothing_is_recorded_after_erasure(subject: Subject, tenant: Tenant, command: str) -> None:
    grant(subject, tenant)
    erase(subject, tenant)
    assert subject.erasure_requested_at == OCCURRED_AT
    with pytest.raises(SubjectErased):
        ANY_COMMAND[command](subject, tenant)


REFUSED: dict[str, Callable[[Subject, Tenant], None]] = {
    "unknown version": lambda s, t: grant(s, t, version="9"),
    "required withdrawal": lambda s, t: withdraw(s, t, "terms"),
    "withdrawal not granted": lambda s, t: withdraw(s, t, "billing"),
    "grant to a non-consent purpose": lambda s, t: grant(s, t, "billing"),
    "disclosure claiming consent": lambda s, t: disclose(s, t, "billing", LegalBasis.CONSENT),
    "disclosure on wrong basis": lambda s, t: disclose(s, t, "newsletter", LegalBasis.CONTRACT),
    "no categories": lambda s, t: collect(s, t, categories=[]),
}


@pytest.mark.parametrize("refused", sorted(REFUSED))
def test_a_refused_command_leaves_the_subject_as_it_was(
    subject: Subject, tenant: Tenant, refused: str
) -> None:
    grant(subject, tenant)
    grant(subject, tenant, "terms")
    version, pending = subject.version, list(subject.pending_events)
    consents = copy.deepcopy(subject.consents)

    with pytest.raises(RuleViolation):
        REFUSED[refused](subject, tenant)

    assert subject.version == version
    assert subject.pending_events == pending
    assert subject.consents == consents


def test_a_refused_command_after_erasure_leaves_the_subject_as_it_was(
    subject: Subject, tenant: Tenant
) -> None:
    erase(subject, tenant)
    version, pending = subject.version, list(subject.pending_events)
    with pytest.raises(SubjectErased):
        grant(subject, tenant)
    assert (subject.version, subject.pending_events) == (version, pending)


def test_a_consent_text_version_cannot_change_its_text(tenant: Tenant) -> None:
    version, pending = tenant.version, list(tenant.pending_events)
    with pytest.raises(ConsentTextConflict):
        define(tenant, "newsletter", "1", text="Send me offers from partners, too.")
    assert (tenant.version, tenant.pending_events) == (version, pending)
    assert tenant.purpose("newsletter").texts == {"1": CONSENT_TEXT}


def test_new_versions_accumulate_and_repeating_a_version_is_allowed(tenant: Tenant) -> None:
    define(tenant, "newsletter", "2", text="Send me the weekly newsletter.")
    define(tenant, "newsletter", "1")  # same text again: not a conflict
    assert tenant.purpose("newsletter").texts == {
        "1": CONSENT_TEXT,
        "2": "Send me the weekly newsletter.",
    }


@pytest.mark.parametrize("code", ["Newsletter", "", "news letter", "-news"])
def test_purpose_codes_are_checked(tenant: Tenant, code: str) -> None:
    with pytest.raises(InvalidEvent):
        define(tenant, code)
    assert code not in tenant.purposes


@pytest.mark.parametrize("code", ["Acme", "", "acme corp"])
def test_tenant_codes_are_checked(code: str) -> None:
    with pytest.raises(InvalidEvent):
        Tenant.register(code, "Acme Ltd")


def test_tenant_id_follows_from_its_code_and_subject_id_is_the_one_given() -> None:
    assert Tenant.register("acme", "Acme Ltd").id == Tenant.id_for("acme")
    assert Tenant.id_for("acme") != Tenant.id_for("globex")
    subject_id = uuid.uuid4()
    assert Subject.register(subject_id, "acme", SEALED_REF).id == subject_id


def test_a_new_tenant_refuses_plaintext_ingest_without_recording_a_policy() -> None:
    tenant = Tenant.register("acme", "Acme Ltd")
    assert not tenant.allow_plaintext_ingest
    assert [type(e).__name__ for e in tenant.pending_events] == ["Registered"]
    with pytest.raises(PlaintextPersonalData) as refused:
        tenant.check_ingest_policy({"ip_address", "envelope.subject_ref"})
    assert refused.value.code == "plaintext_personal_data"
    assert "envelope.subject_ref, ip_address" in refused.value.detail
    tenant.check_ingest_policy(set())  # nothing in clear: nothing to refuse


def test_allowing_plaintext_ingest_is_an_event_of_the_tenant() -> None:
    tenant = Tenant.register("acme", "Acme Ltd", allow_plaintext_ingest=True)
    registered, policy = tenant.collect_events()
    assert isinstance(policy, Tenant.IngestPolicySet)
    assert (policy.tenant, policy.allow_plaintext_ingest) == ("acme", True)
    tenant.check_ingest_policy({"ip_address"})
    replayed = policy.mutate(registered.mutate(None))
    assert replayed.allow_plaintext_ingest


def test_setting_the_same_policy_again_records_nothing() -> None:
    tenant = Tenant.register("acme", "Acme Ltd")
    assert not tenant.set_ingest_policy(allow_plaintext_ingest=False)
    assert tenant.set_ingest_policy(allow_plaintext_ingest=True)
    assert not tenant.set_ingest_policy(allow_plaintext_ingest=True)
    assert tenant.set_ingest_policy(allow_plaintext_ingest=False)
    assert [type(e).__name__ for e in tenant.pending_events] == [
        "Registered",
        "IngestPolicySet",
        "IngestPolicySet",
    ]
    with pytest.raises(PlaintextPersonalData):
        tenant.check_ingest_policy({"note"})
