"""Restriction (art. 18) and objection (art. 21) through the API: recording them, the purpose
check's answers, refusals with the rule's reason, and the subject's state of both."""

from __future__ import annotations

from datetime import UTC, datetime
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


def test_a_rectification_shows_the_new_value_everywhere_and_says_who_changed_it(
    api: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
    history: dict[str, str],
) -> None:
    admin = tokens["admin"]
    now = datetime.now(UTC)  # inside the records' one-year horizon
    ledger.record(
        [
            b.at(b.collect(ALICE, event_id="c-77", description="Alice's address, 12 Rose"), now),
            b.at(b.disclose(ALICE, event_id="d-77", note="to alice@old.example"), now),
        ]
    )
    fixes = [
        ("c-77", "description", "Alice's address, 14 Rose Lane"),
        ("d-77", "note", "to alice@new.example"),
        (history["regrant"], "evidence", "form 12, signed"),
    ]
    for target, field, value in fixes:
        body = {"subject_ref": ALICE, "corrects_event_id": target, "field": field, "value": value}
        made = post(api, admin, "/v1/subject/rectifications", body)
        assert made.status_code == 201, made.text
    wrong = {"subject_ref": ALICE, "corrects_event_id": "c-77", "field": "note", "value": "x"}
    refused = post(api, admin, "/v1/subject/rectifications", wrong)
    assert (refused.status_code, refused.json()["reason"]) == (409, "field_not_rectifiable")
    catch_up(settings_db_only, reader)

    alice = subject_id(ledger, ALICE)
    collections = call(api, admin, "GET", f"/v1/subjects/{alice}/collections").json()
    [collection] = [c for c in collections["collections"] if c["event_id"] == "c-77"]
    assert collection["description"] == "Alice's address, 14 Rose Lane"
    [fix] = collection["rectifications"]
    assert (fix["field"], fix["producer"]) == ("description", f"api:{_key_id(admin)}")
    window = "?since=2000-01-01T00:00:00Z"
    disclosures = call(api, admin, "GET", f"/v1/subjects/{alice}/disclosures{window}").json()
    [disclosure] = [d for d in disclosures["disclosures"] if d["event_id"] == "d-77"]
    assert disclosure["note"] == "to alice@new.example" and disclosure["rectifications"]
    consents = call(api, admin, "GET", f"/v1/subjects/{alice}/consents").json()
    [newsletter] = [c for c in consents["consents"] if c["purpose"] == "newsletter"]
    assert newsletter["evidence"] == "form 12, signed"
    assert [r["field"] for r in newsletter["rectifications"]] == ["evidence"]
    withheld = call(api, tokens["reader"], "GET", f"/v1/subjects/{alice}/collections").json()
    assert all(c["description"] is None for c in withheld["collections"])

    report = post(api, admin, "/v1/subject/report", {"subject_ref": ALICE, "format": "json"})
    body = report.json()
    history_entries = {
        c["event_id"]: c for p in body["purposes"] for c in p["history"] if c["rectifications"]
    }
    assert history_entries[history["regrant"]]["evidence"] == "form 12, signed"
    [reported] = [c for c in body["collections"] if c["event_id"] == "c-77"]
    assert reported["description"] == "Alice's address, 14 Rose Lane"
    assert reported["rectifications"][0]["event_id"] == fix["event_id"]


def _key_id(token: str) -> str:
    return token.split("_")[1]
