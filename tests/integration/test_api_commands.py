"""Admin commands through the API: erasure requests and legal holds, and what they change."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient

from ledger.application.service import Ledger, LedgerReader
from ledger.process.settings import Settings
from tests import builders as b
from tests.history import ALICE, catch_up, days_ago, ledger, reader, subject_id
from tests.integration.test_api import SCOPES, api, call, check, history, tokens

__all__ = ["api", "history", "ledger", "reader", "tokens"]  # fixtures

ROUTES = [
    (
        "/v1/subject/consent-grants",
        {"subject_ref": ALICE, "purpose": "newsletter", "consent_text_version": "2"},
    ),
    ("/v1/subject/consent-withdrawals", {"subject_ref": ALICE, "purpose": "newsletter"}),
    ("/v1/subject/erasure", {"subject_ref": ALICE}),
    ("/v1/subject/legal-holds", {"subject_ref": ALICE, "hold_reference": "case-1"}),
    ("/v1/subject/legal-holds/release", {"subject_ref": ALICE, "hold_reference": "case-1"}),
]


def events(ledger: Ledger) -> int:
    return len(ledger.store.select_notifications(1, 100_000))


def erasure_status(api: TestClient, token: str, subject: UUID) -> dict[str, Any]:
    response = call(api, token, "GET", f"/v1/subjects/{subject}/erasure-status")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_only_admin_keys_may_record(
    api: TestClient, tokens: dict[str, str], ledger: Ledger
) -> None:
    before = events(ledger)
    for path, body in ROUTES:
        assert api.post(path, json=body).status_code == 401
        for scope in set(SCOPES) - {"admin"}:
            response = call(api, tokens[scope], "POST", path, body)
            assert response.status_code == 403, (path, scope)
    assert events(ledger) == before


def test_a_legal_hold_refuses_erasure_until_released(
    api: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    admin, alice = tokens["admin"], subject_id(ledger, ALICE)
    hold = {"subject_ref": ALICE, "hold_reference": "case-1", "note": "Alice v. Acme"}
    assert call(api, admin, "POST", "/v1/subject/legal-holds", hold).status_code == 201
    refused = call(api, admin, "POST", "/v1/subject/erasure", {"subject_ref": ALICE})
    assert refused.status_code == 202 and refused.json()["status"] == "recorded"
    catch_up(settings_db_only, reader)

    status = erasure_status(api, admin, alice)
    [request] = status["erasure_requests"]
    assert (request["status"], request["refusal_reason"]) == ("refused", "legal_hold")
    assert request["hold_references"] == ["case-1"] and request["overdue"] is False
    assert [h["hold_reference"] for h in status["legal_holds"]] == ["case-1"]
    assert check(api, admin, ALICE, "newsletter")["reason"] == "consent_granted"

    release = call(api, admin, "POST", "/v1/subject/legal-holds/release", hold)
    assert release.status_code == 200
    again = call(api, admin, "POST", "/v1/subject/erasure", {"subject_ref": ALICE})
    assert again.json()["subject_id"] == str(alice)
    catch_up(settings_db_only, reader)

    status = erasure_status(api, admin, alice)
    assert [r["status"] for r in status["erasure_requests"]] == ["refused", "shredded"]
    assert (status["key_state"], status["personal_data"], status["legal_holds"]) == (
        "shredded",
        "erased",
        [],
    )
    assert check(api, admin, ALICE, "newsletter")["reason"] == "subject_erased"
    gone = call(api, admin, "POST", "/v1/subject/consents", {"subject_ref": ALICE})
    assert gone.status_code == 410 and ALICE not in gone.text


def test_a_repeated_request_is_recorded_once(
    api: TestClient, tokens: dict[str, str], ledger: Ledger
) -> None:
    body = {"subject_ref": ALICE, "event_id": "ticket-4711"}
    first = call(api, tokens["admin"], "POST", "/v1/subject/erasure", body)
    second = call(api, tokens["admin"], "POST", "/v1/subject/erasure", body)
    assert (first.json()["status"], second.json()["status"]) == ("recorded", "duplicate")


def test_a_rule_refusal_is_a_409_problem_without_the_reference(
    api: TestClient, tokens: dict[str, str]
) -> None:
    admin = tokens["admin"]
    unknown = call(api, admin, "POST", "/v1/subject/erasure", {"subject_ref": "nobody@x.io"})
    assert unknown.status_code == 409
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["reason"] == "unknown_subject" and "nobody@x.io" not in unknown.text
    hold = {"subject_ref": ALICE, "hold_reference": "never-placed"}
    release = call(api, admin, "POST", "/v1/subject/legal-holds/release", hold)
    assert (release.status_code, release.json()["reason"]) == (409, "legal_hold_unknown")


def test_overdue_requests_are_flagged_and_counted(
    api: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    alice = subject_id(ledger, ALICE)
    ledger.record([b.at(b.erase(ALICE), days_ago(40))])  # shredded, processors not yet told
    catch_up(settings_db_only, reader)

    [request] = erasure_status(api, tokens["auditor"], alice)["erasure_requests"]
    assert (request["status"], request["overdue"]) == ("shredded", True)
    scraped = api.get("/metrics").text
    assert 'ledger_erasure_requests_overdue{tenant="acme"} 1.0' in scraped
    # Dave's request (yesterday, in the scripted history) is unsettled too, but not overdue.
    assert 'ledger_erasure_requests_unsettled{tenant="acme"} 2.0' in scraped


def test_consents_are_given_and_withdrawn_by_the_rules_producers_keep(
    api: TestClient, tokens: dict[str, str], reader: LedgerReader, settings_db_only: Settings
) -> None:
    admin = tokens["admin"]
    grant = {"subject_ref": ALICE, "purpose": "newsletter", "consent_text_version": "9"}
    unknown = call(api, admin, "POST", "/v1/subject/consent-grants", grant)
    assert unknown.status_code == 409
    required = {"subject_ref": ALICE, "purpose": "terms"}
    refused = call(api, admin, "POST", "/v1/subject/consent-withdrawals", required)
    assert (refused.status_code, refused.json()["reason"]) == (409, "required_consent")
    withdrawal = {"subject_ref": ALICE, "purpose": "newsletter", "source": "help-desk"}
    done = call(api, admin, "POST", "/v1/subject/consent-withdrawals", withdrawal)
    assert done.status_code == 201
    catch_up(settings_db_only, reader)
    consents = call(api, admin, "POST", "/v1/subject/consents", {"subject_ref": ALICE}).json()
    newsletter = next(c for c in consents["consents"] if c["purpose"] == "newsletter")
    assert (newsletter["state"], newsletter["source"]) == ("withdrawn", "help-desk")
    assert newsletter["event_id"] == done.json()["event_id"]
    again = {**grant, "consent_text_version": "2", "evidence": "ticket 42"}
    assert call(api, admin, "POST", "/v1/subject/consent-grants", again).status_code == 201
    catch_up(settings_db_only, reader)
    consents = call(api, admin, "POST", "/v1/subject/consents", {"subject_ref": ALICE}).json()
    newsletter = next(c for c in consents["consents"] if c["purpose"] == "newsletter")
    assert (newsletter["state"], newsletter["evidence"]) == ("granted", "ticket 42")
