"""Small builders for ingest commands, shared by every test file.

Defaults are plain and valid; a test passes only what its behaviour is about. Personal values
look personal (an e-mail address, an IP address) so tests can assert they never appear in clear.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from ledger.application.service import Ledger
from ledger.domain.values import LegalBasis
from ledger.keys.crypto import LocalKek, new_secret
from ledger.wire.contract import Command, Envelope

TENANT = "acme"
OCCURRED_AT = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
REF = "alice@example.com"
IP = "203.0.113.7"
USER_AGENT = "Mozilla/5.0 (Alice's laptop)"
CONSENT_TEXT = "Send me the monthly newsletter."


def envelope(
    ref: str | None, *, tenant: str = TENANT, event_id: str | None = None, producer: str = "crm"
) -> Envelope:
    return Envelope(
        event_id=event_id or str(uuid.uuid4()),
        tenant=tenant,
        subject_ref=ref,
        occurred_at=OCCURRED_AT,
        producer=producer,
    )


def define_purpose(
    purpose: str = "newsletter",
    version: str = "1",
    *,
    text: str = CONSENT_TEXT,
    basis: LegalBasis = LegalBasis.CONSENT,
    required: bool = False,
    description: str = "",
    tenant: str = TENANT,
    event_id: str | None = None,
    direct_marketing: bool = False,
    allowed_under_restriction: bool = False,
) -> Command:
    facts = {
        "purpose": purpose,
        "consent_text": text,
        "consent_text_version": version,
        "required": required,
        "legal_basis": basis,
        "description": description,
        "direct_marketing": direct_marketing,
        "allowed_under_restriction": allowed_under_restriction,
    }
    return Command("PurposeDefined", envelope(None, tenant=tenant, event_id=event_id), facts, {})


def grant(
    ref: str,
    purpose: str = "newsletter",
    version: str = "1",
    event_id: str | None = None,
    *,
    tenant: str = TENANT,
    ip_address: str | None = IP,
    user_agent: str | None = USER_AGENT,
    evidence: str | None = None,
) -> Command:
    facts = {"purpose": purpose, "consent_text_version": version, "source": "signup-form"}
    personal = {"ip_address": ip_address, "user_agent": user_agent, "evidence": evidence}
    return Command(
        "ConsentGranted", envelope(ref, tenant=tenant, event_id=event_id), facts, personal
    )


def withdraw(
    ref: str,
    purpose: str = "newsletter",
    event_id: str | None = None,
    *,
    tenant: str = TENANT,
    evidence: str | None = None,
) -> Command:
    facts = {"purpose": purpose, "source": "app-settings"}
    return Command(
        "ConsentWithdrawn",
        envelope(ref, tenant=tenant, event_id=event_id),
        facts,
        {"evidence": evidence},
    )


def collect(
    ref: str,
    purpose: str = "newsletter",
    event_id: str | None = None,
    *,
    categories: Sequence[str] = ("contact.email",),
    tenant: str = TENANT,
    description: str | None = None,
) -> Command:
    facts = {"purpose": purpose, "categories": list(categories), "source": "data-subject"}
    return Command(
        "PersonalDataCollected",
        envelope(ref, tenant=tenant, event_id=event_id),
        facts,
        {"description": description},
    )


def disclose(
    ref: str,
    purpose: str = "newsletter",
    basis: LegalBasis = LegalBasis.CONSENT,
    event_id: str | None = None,
    *,
    categories: Sequence[str] = ("contact.email",),
    recipient: str = "mailer-inc",
    tenant: str = TENANT,
    note: str | None = None,
) -> Command:
    facts = {
        "recipient": recipient,
        "purpose": purpose,
        "categories": list(categories),
        "legal_basis": basis,
        "reference": "contract-17",
    }
    return Command(
        "DataDisclosed", envelope(ref, tenant=tenant, event_id=event_id), facts, {"note": note}
    )


def erase(
    ref: str, event_id: str | None = None, *, tenant: str = TENANT, reason: str | None = None
) -> Command:
    return Command(
        "ErasureRequested",
        envelope(ref, tenant=tenant, event_id=event_id),
        {"source": "email"},
        {"reason": reason},
    )


def hold(
    ref: str,
    hold_reference: str = "case-2026-14",
    event_id: str | None = None,
    *,
    tenant: str = TENANT,
    note: str | None = None,
) -> Command:
    return Command(
        "LegalHoldPlaced",
        envelope(ref, tenant=tenant, event_id=event_id),
        {"hold_reference": hold_reference},
        {"note": note},
    )


def release(ref: str, hold_reference: str = "case-2026-14", *, tenant: str = TENANT) -> Command:
    return Command(
        "LegalHoldReleased", envelope(ref, tenant=tenant), {"hold_reference": hold_reference}, {}
    )


def restrict(
    ref: str,
    purposes: Sequence[str] = (),
    reference: str = "dispute-7",
    *,
    grounds: str = "ACCURACY_CONTESTED",
    tenant: str = TENANT,
    event_id: str | None = None,
    note: str | None = None,
) -> Command:
    facts = {
        "restriction_reference": reference,
        "grounds": grounds,
        "purposes": list(purposes),
        "source": "support-ticket",
    }
    return Command(
        "ProcessingRestricted",
        envelope(ref, tenant=tenant, event_id=event_id),
        facts,
        {"note": note},
    )


def lift(
    ref: str, reference: str = "dispute-7", *, tenant: str = TENANT, note: str | None = None
) -> Command:
    facts = {"restriction_reference": reference, "source": "support-ticket"}
    return Command("RestrictionLifted", envelope(ref, tenant=tenant), facts, {"note": note})


def object_to(
    ref: str,
    purpose: str = "analytics",
    *,
    tenant: str = TENANT,
    event_id: str | None = None,
    reason: str | None = None,
) -> Command:
    facts = {"purpose": purpose, "source": "web-form"}
    return Command(
        "ObjectionRaised",
        envelope(ref, tenant=tenant, event_id=event_id),
        facts,
        {"reason": reason},
    )


def rectify(
    ref: str,
    corrects_event_id: str,
    field: str = "description",
    value: str | None = "Alice's new address, 14 Rose Lane",
    *,
    tenant: str = TENANT,
    event_id: str | None = None,
    reason: str | None = None,
) -> Command:
    facts = {"corrects_event_id": corrects_event_id, "field": field, "source": "support-ticket"}
    return Command(
        "PersonalDataRectified",
        envelope(ref, tenant=tenant, event_id=event_id),
        facts,
        {"value": value, "reason": reason},
    )


def open_request(
    ref: str,
    kind: str = "ACCESS",
    *,
    tenant: str = TENANT,
    event_id: str | None = None,
    verified: bool = True,
    details: str | None = None,
) -> Command:
    facts = {"kind": kind, "channel": "web-form", "identity_verified": verified}
    return Command(
        "RequestOpened",
        envelope(ref, tenant=tenant, event_id=event_id),
        facts,
        {"details": details},
    )


def verify(ref: str, request_id: str, *, tenant: str = TENANT) -> Command:
    facts = {"request_id": request_id, "method": "id-document"}
    return Command("RequestIdentityVerified", envelope(ref, tenant=tenant), facts, {})


def extend(ref: str, request_id: str, months: int = 1, *, tenant: str = TENANT) -> Command:
    facts = {"request_id": request_id, "months": months, "extension_reason": "many requests"}
    return Command("RequestExtended", envelope(ref, tenant=tenant), facts, {})


def complete(
    ref: str,
    request_id: str,
    resolved_by: str = "",
    *,
    outcome: str = "FULFILLED",
    tenant: str = TENANT,
    reason: str | None = None,
) -> Command:
    facts = {"request_id": request_id, "outcome": outcome, "resolved_by_event_id": resolved_by}
    return Command("RequestCompleted", envelope(ref, tenant=tenant), facts, {"reason": reason})


def grounds(
    ref: str,
    purpose: str = "analytics",
    *,
    tenant: str = TENANT,
    reference: str = "lia-2026-3",
    reasoning: str | None = "Fraud prevention outweighs the objection",
) -> Command:
    facts = {"purpose": purpose, "grounds_reference": reference}
    return Command(
        "CompellingGroundsRecorded", envelope(ref, tenant=tenant), facts, {"reasoning": reasoning}
    )


def memory_ledger(lookup_key: bytes | None = None) -> Ledger:
    """An in-memory ledger with fresh keys."""
    return Ledger(
        {"PERSISTENCE_MODULE": "eventsourcing.popo"},
        kek=LocalKek(new_secret(), "kek-1"),
        lookup_key=lookup_key or new_secret(),
    )


def at(command: Command, when: datetime) -> Command:
    """The same command, happening upstream at ``when``."""
    return replace(command, envelope=replace(command.envelope, occurred_at=when))
