"""Consent and disclosure against the purpose's catalogued legal basis, as a table.

Every claimed basis, catalogued basis and consent state together, recorded through
``Ledger.record`` (the path the ingest consumer and the API's writer both take) on an in-memory
ledger. A consent in force for a purpose catalogued under another basis can only come from
earlier history; here it comes from a purpose re-catalogued after the grant, which the ledger
allows.

The expectations restate docs/contract.md ("Legal basis and consent") rule by rule.
"""

from __future__ import annotations

import itertools

import pytest

from ledger.application.service import Ledger
from ledger.domain.values import LegalBasis
from ledger.wire.contract import Command
from tests import builders as b

BASES = list(LegalBasis)
STATES = ("granted", "withdrawn", "never")
PURPOSE = "p"


def ledger_with(catalogued: LegalBasis, state: str) -> Ledger:
    """The subject's consent to ``PURPOSE`` is in ``state``, then the purpose is catalogued
    under ``catalogued``."""
    ledger = b.memory_ledger()
    ledger.register_tenant(b.TENANT, "Acme Ltd")
    history: list[Command] = [b.define_purpose(PURPOSE), b.collect(b.REF, PURPOSE)]
    if state in ("granted", "withdrawn"):
        history.append(b.grant(b.REF, PURPOSE))
    if state == "withdrawn":
        history.append(b.withdraw(b.REF, PURPOSE))
    history.append(b.define_purpose(PURPOSE, basis=catalogued))
    assert all(o.status == "recorded" for o in ledger.record(history))
    return ledger


def outcome(ledger: Ledger, command: Command) -> str:
    [result] = ledger.record([command])
    if result.status == "rejected":
        assert result.reason is not None and result.detail
        return result.reason
    return result.status


def disclosure_expected(claimed: LegalBasis, catalogued: LegalBasis, state: str) -> str:
    if claimed is not catalogued:
        return "no_legal_basis"
    if claimed is LegalBasis.CONSENT and state != "granted":
        return "no_legal_basis"
    return "recorded"


def grant_expected(catalogued: LegalBasis) -> str:
    return "recorded" if catalogued is LegalBasis.CONSENT else "purpose_not_consent_based"


def withdrawal_expected(catalogued: LegalBasis, state: str) -> str:
    if state == "granted":
        return "recorded"  # a consent in force is always withdrawable
    if catalogued is not LegalBasis.CONSENT:
        return "purpose_not_consent_based"
    return "consent_not_granted"


@pytest.mark.parametrize(
    ("claimed", "catalogued", "state"),
    list(itertools.product(BASES, BASES, STATES)),
    ids=lambda v: v.value if isinstance(v, LegalBasis) else v,
)
def test_a_disclosure_names_the_catalogued_basis_and_consent_when_that_is_consent(
    claimed: LegalBasis, catalogued: LegalBasis, state: str
) -> None:
    ledger = ledger_with(catalogued, state)
    expected = disclosure_expected(claimed, catalogued, state)
    assert outcome(ledger, b.disclose(b.REF, PURPOSE, claimed)) == expected


@pytest.mark.parametrize(
    ("catalogued", "state"),
    list(itertools.product(BASES, STATES)),
    ids=lambda v: v.value if isinstance(v, LegalBasis) else v,
)
def test_consent_is_granted_only_to_a_purpose_catalogued_under_consent(
    catalogued: LegalBasis, state: str
) -> None:
    ledger = ledger_with(catalogued, state)
    assert outcome(ledger, b.grant(b.REF, PURPOSE)) == grant_expected(catalogued)
    subject = ledger.find_subject(b.TENANT, b.REF)
    assert subject is not None
    assert subject.has_consent(PURPOSE) == (state == "granted" or catalogued is LegalBasis.CONSENT)


@pytest.mark.parametrize(
    ("catalogued", "state"),
    list(itertools.product(BASES, STATES)),
    ids=lambda v: v.value if isinstance(v, LegalBasis) else v,
)
def test_a_withdrawal_needs_a_consent_purpose_or_a_consent_in_force(
    catalogued: LegalBasis, state: str
) -> None:
    ledger = ledger_with(catalogued, state)
    assert outcome(ledger, b.withdraw(b.REF, PURPOSE)) == withdrawal_expected(catalogued, state)
    subject = ledger.find_subject(b.TENANT, b.REF)
    assert subject is not None and not subject.has_consent(PURPOSE)


def test_a_refused_disclosure_says_which_basis_the_purpose_has() -> None:
    ledger = ledger_with(LegalBasis.LEGITIMATE_INTERESTS, "never")
    [refused] = ledger.record([b.disclose(b.REF, PURPOSE, LegalBasis.CONSENT)])
    assert refused.reason == "no_legal_basis"
    assert refused.detail == (
        f"disclosure for purpose {PURPOSE!r} claims CONSENT, "
        "but the purpose is catalogued under LEGITIMATE_INTERESTS"
    )
