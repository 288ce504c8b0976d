"""The catalogued-basis rule on a real PostgreSQL: through the API's command path, and over
history recorded before the rule (read, rebuilt and replayed as recorded).

The history holds what older ledgers accepted: a consent to a purpose catalogued under
legitimate interests and a disclosure under CONSENT for it. They are written the way those
ledgers wrote them, as the subject's events with their receipts, without today's checks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.application.service import Ledger, LedgerReader
from ledger.domain.subject import Subject
from ledger.domain.values import LegalBasis
from ledger.process.settings import Settings
from ledger.storage.store import Receipt
from ledger.wire.contract import subject_command
from projections.api.problems import Conflict
from projections.api.writer import LedgerWriter
from projections.rebuild import rebuild
from tests import builders as b
from tests.history import ALICE, catch_up, days_ago, ledger, reader, snapshot
from tests.integration.test_api import api, call, check, tokens
from tests.integration.test_api_replays import replay

__all__ = ["api", "ledger", "reader", "tokens"]  # fixtures
FRAUD = "fraud-checks"  # catalogued under LEGITIMATE_INTERESTS


def legacy(subject: Subject, kind: type[Any], event_id: str, **fields: Any) -> Receipt:
    """``kind`` triggered on the subject as a ledger before the rule did, with its receipt."""
    subject.trigger_event(
        kind,
        event_id=event_id,
        occurred_at=days_ago(40),
        producer="crm",
        tenant=b.TENANT,
        **fields,
    )
    return Receipt(b.TENANT, event_id, subject.id, subject.version)


@pytest.fixture
def history(ledger: Ledger, reader: LedgerReader, settings_db_only: Settings) -> dict[str, str]:
    outcomes = ledger.record(
        [
            b.define_purpose("newsletter", event_id="newsletter-defined"),
            b.define_purpose(
                FRAUD,
                basis=LegalBasis.LEGITIMATE_INTERESTS,
                text="We check orders for fraud.",
                event_id="fraud-defined",
            ),
            b.at(b.grant(ALICE, "newsletter"), days_ago(50)),
        ]
    )
    assert [o.status for o in outcomes] == ["recorded"] * 3
    alice = ledger.find_subject(b.TENANT, ALICE)
    assert alice is not None
    receipts = [
        legacy(
            alice,
            Subject.ConsentGranted,
            "legacy-grant",
            purpose=FRAUD,
            consent_text_version="1",
            source="signup-form",
            ip_address=None,
            user_agent=None,
            evidence=None,
        ),
        legacy(
            alice,
            Subject.DataDisclosed,
            "legacy-disclosure",
            recipient="credit-bureau",
            purpose=FRAUD,
            categories=["contact.email"],
            legal_basis=LegalBasis.CONSENT,
            reference="",
            note=None,
        ),
    ]
    ledger.save(alice, receipts=receipts)
    catch_up(settings_db_only, reader, sweep=True)
    return {"alice": str(alice.id)}


def record(writer: LedgerWriter, kind: str, **values: Any) -> str:
    """Records as the API's admin routes do; the outcome's status, or the refusal's reason."""
    command = subject_command(
        kind, tenant=b.TENANT, subject_ref=ALICE, producer="api:test", **values
    )
    try:
        return writer.record(command).status
    except Conflict as refused:
        assert refused.status == 409 and refused.detail
        reason: str = refused.extra["reason"]
        return reason


def test_history_from_before_the_rule_reads_rebuilds_and_replays_as_recorded(
    api: TestClient,
    tokens: dict[str, str],
    history: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    auditor, alice = tokens["auditor"], history["alice"]
    answer = check(api, auditor, ALICE, FRAUD)  # by the purpose's basis, not the consent
    assert (answer["allowed"], answer["reason"]) == (True, "legal_basis")
    assert answer["event_id"] == "fraud-defined"
    consents = call(api, auditor, "GET", f"/v1/subjects/{alice}/consents").json()["consents"]
    assert {c["purpose"]: c["state"] for c in consents} == {
        "newsletter": "granted",
        FRAUD: "granted",
    }
    window = "?since=2020-01-01T00:00:00Z&until=2100-01-01T00:00:00Z"
    log = call(api, auditor, "GET", f"/v1/subjects/{alice}/disclosures{window}").json()
    assert [(d["recipient"], d["legal_basis"]) for d in log["disclosures"]] == [
        ("credit-bureau", "CONSENT")
    ]

    before = snapshot(settings_db_only)
    for view in ("consent", "records"):
        rebuild(settings_db_only, view, reader)
    assert snapshot(settings_db_only) == before

    built = replay(api, auditor, datetime.now(UTC))
    assert built["status"] == "ready", built
    base = f"/v1/replays/{built['replay_id']}"
    for purpose in (FRAUD, "newsletter"):
        body = {"subject_ref": ALICE, "purpose": purpose}
        live = call(api, auditor, "POST", "/v1/purpose-check", body).json()
        assert call(api, auditor, "POST", f"{base}/purpose-check", body).json() == live
    then = call(api, auditor, "GET", f"{base}/subjects/{alice}/consents").json()["consents"]
    assert then == consents


def test_the_api_command_path_refuses_what_the_rule_refuses(
    api: TestClient,
    tokens: dict[str, str],
    history: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    writer = LedgerWriter(settings_db_only)  # what the API's routes record with
    disclosure = {
        "recipient": "credit-bureau",
        "purpose": FRAUD,
        "categories": ["contact.email"],
        "reference": "",
        "note": None,
    }
    withdrawal = {"purpose": FRAUD, "source": "api", "evidence": None}
    try:
        grant = {
            "purpose": FRAUD,
            "consent_text_version": "1",
            "source": "api",
            **dict.fromkeys(("ip_address", "user_agent", "evidence")),
        }
        assert record(writer, "ConsentGranted", **grant) == "purpose_not_consent_based"
        claimed = {**disclosure, "legal_basis": LegalBasis.CONSENT}
        assert record(writer, "DataDisclosed", **claimed) == "no_legal_basis"
        own = {**disclosure, "legal_basis": LegalBasis.LEGITIMATE_INTERESTS}
        assert record(writer, "DataDisclosed", **own) == "recorded"
        # The consent recorded before the rule is still the subject's to withdraw, once.
        assert record(writer, "ConsentWithdrawn", **withdrawal) == "recorded"
        assert record(writer, "ConsentWithdrawn", **withdrawal) == "purpose_not_consent_based"
    finally:
        writer.close()

    catch_up(settings_db_only, reader)
    states = call(api, tokens["reader"], "POST", "/v1/subject/consents", {"subject_ref": ALICE})
    assert {c["purpose"]: c["state"] for c in states.json()["consents"]}[FRAUD] == "withdrawn"
    answer = check(api, tokens["producer"], ALICE, FRAUD)
    assert (answer["allowed"], answer["reason"]) == (True, "legal_basis")
