"""Restriction (art. 18) and objection (art. 21) through the API: recording them, the purpose
check's answers, refusals with the rule's reason, and the subject's state of both."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from ledger.application.service import Ledger, LedgerReader
from ledger.domain.values import LegalBasis
from ledger.process.settings import Settings
from tests import builders as b
from tests.history import ALICE, BOB, DAVE, catch_up, ledger, reader, subject_id
from tests.integration.test_api import SCOPES, api, call, check, history, tokens

__all__ = ["api", "history", "ledger", "reader", "tokens"]  # fixtures

RESTRICT = {
    "subject_ref": ALICE,
    "restriction_reference": "dispute-1",
    "grounds": "ACCURACY_CONTESTED",
    "purposes": ["newsletter"],
    "note": "Alice says her address is wrong",
}
ROUTES = [
    ("/v1/subject/restrictions", RESTRICT),
    ("/v1/subject/restrictions/lift", {"subject_ref": ALICE, "restriction_reference": "d"}),
    ("/v1/subject/objections", {"subject_ref": ALICE, "purpose": "analytics"}),
    (
        "/v1/subject/objections/grounds",
        {"subject_ref": ALICE, "purpose": "analytics", "grounds_reference": "g", "reasoning": "r"},
    ),
]


def post(api: TestClient, token: str, path: str, body: dict[str, Any]) -> Any:
    return call(api, token, "POST", path, body)


def more_purposes(ledger: Ledger) -> None:
    extra = [
        b.define_purpose("analytics", "", text="", basis=LegalBasis.LEGITIMATE_INTERESTS),
        b.define_purpose("offers", "1", direct_marketing=True),
        b.define_purpose(
            "archive",
            "",
            text="",
            basis=LegalBasis.LEGAL_OBLIGATION,
            allowed_under_restriction=True,
        ),
    ]
    assert {o.status for o in ledger.record(extra)} == {"recorded"}


def test_only_admin_keys_may_record_rights(
    api: TestClient, tokens: dict[str, str], ledger: Ledger
) -> None:
    before = len(ledger.store.select_notifications(1, 100_000))
    for path, body in ROUTES:
        assert api.post(path, json=body).status_code == 401
        for scope in set(SCOPES) - {"admin"}:
            assert post(api, tokens[scope], path, body).status_code == 403, (path, scope)
    assert len(ledger.store.select_notifications(1, 100_000)) == before


def test_a_restriction_refuses_what_it_covers_until_lifted(
    api: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    admin, producer = tokens["admin"], tokens["producer"]
    more_purposes(ledger)
    made = post(api, admin, "/v1/subject/restrictions", RESTRICT)
    assert made.status_code == 201 and made.json()["status"] == "recorded"
    everything = {**RESTRICT, "restriction_reference": "dispute-2", "purposes": []}
    assert post(api, admin, "/v1/subject/restrictions", {**everything, "subject_ref": BOB})
    catch_up(settings_db_only, reader)

    refused = check(api, producer, ALICE, "newsletter")
    assert (refused["allowed"], refused["reason"]) == (False, "processing_restricted")
    assert refused["event_id"] == made.json()["event_id"]
    assert check(api, producer, BOB, "billing")["reason"] == "processing_restricted"
    assert check(api, producer, BOB, "archive")["reason"] == "legal_basis"

    again = post(api, admin, "/v1/subject/restrictions", RESTRICT)
    assert again.status_code == 409 and again.json()["reason"] == "restriction_exists"
    unknown = {"subject_ref": ALICE, "restriction_reference": "no-such"}
    missing = post(api, admin, "/v1/subject/restrictions/lift", unknown)
    assert missing.status_code == 409 and missing.json()["reason"] == "restriction_unknown"
    erased = post(api, admin, "/v1/subject/restrictions", {**RESTRICT, "subject_ref": DAVE})
    assert (erased.status_code, erased.json()["reason"]) == (409, "subject_erased")  # Dave

    rights = call(api, admin, "GET", f"/v1/subjects/{subject_id(ledger, ALICE)}/rights").json()
    [restriction] = rights["restrictions"]
    assert restriction["purposes"] == ["newsletter"]
    assert restriction["note"] == RESTRICT["note"]  # opened for an admin
    reader_view = post(api, tokens["reader"], "/v1/subject/rights", {"subject_ref": ALICE})
    assert reader_view.json()["restrictions"][0]["note"] is None  # not for a reader

    lift = {"subject_ref": ALICE, "restriction_reference": "dispute-1"}
    assert post(api, admin, "/v1/subject/restrictions/lift", lift).status_code == 200
    catch_up(settings_db_only, reader)
    assert check(api, producer, ALICE, "newsletter")["reason"] == "consent_granted"
    assert post(api, admin, "/v1/subject/rights", lift).json()["restrictions"] == []


def test_objections_and_the_grounds_that_answer_them(
    api: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    admin, producer = tokens["admin"], tokens["producer"]
    more_purposes(ledger)

    def objection(purpose: str) -> Any:
        body = {"subject_ref": ALICE, "purpose": purpose, "reason": "Alice minds"}
        return post(api, admin, "/v1/subject/objections", body)

    def grounds(purpose: str) -> Any:
        body = {
            "subject_ref": ALICE,
            "purpose": purpose,
            "grounds_reference": "lia-1",
            "reasoning": "Alice's account shows fraud",
        }
        return post(api, admin, "/v1/subject/objections/grounds", body)

    refused = objection("newsletter")
    assert refused.status_code == 409 and refused.json()["reason"] == "objection_not_applicable"
    assert objection("analytics").status_code == 201
    assert objection("offers").status_code == 201
    assert objection("analytics").json()["reason"] == "objection_exists"
    catch_up(settings_db_only, reader)
    assert check(api, producer, ALICE, "analytics")["reason"] == "objected"
    assert check(api, producer, ALICE, "offers")["reason"] == "objected"

    assert grounds("offers").json()["reason"] == "objection_absolute"
    assert grounds("analytics").status_code == 200
    catch_up(settings_db_only, reader)
    assert check(api, producer, ALICE, "analytics")["reason"] == "legal_basis"

    state = post(api, admin, "/v1/subject/rights", {"subject_ref": ALICE}).json()
    by_purpose = {o["purpose"]: o for o in state["objections"]}
    assert by_purpose["analytics"]["standing"] is False
    assert by_purpose["analytics"]["reasoning"] == "Alice's account shows fraud"
    assert by_purpose["offers"]["standing"] is True
    purposes = {p["purpose"]: p for p in call(api, admin, "GET", "/v1/purposes").json()}
    assert purposes["offers"]["direct_marketing"] is True
    assert purposes["archive"]["allowed_under_restriction"] is True


def test_bad_rights_requests_are_problems_that_name_the_field(
    api: TestClient, tokens: dict[str, str]
) -> None:
    admin = tokens["admin"]
    bad_grounds = post(api, admin, "/v1/subject/restrictions", {**RESTRICT, "grounds": "BORED"})
    assert bad_grounds.status_code == 422 and "BORED" not in bad_grounds.text
    bad_purpose = {**RESTRICT, "purposes": ["Not A Code"]}
    refused = post(api, admin, "/v1/subject/restrictions", bad_purpose)
    assert refused.status_code == 422 and "purposes" in refused.json()["detail"]
    unknown = post(api, admin, "/v1/subject/restrictions", {**RESTRICT, "purposes": ["nope"]})
    assert unknown.status_code == 409 and unknown.json()["reason"] == "unknown_purpose"
    assert ALICE not in unknown.text
