"""The register of requests through the API: opening, extending and completing requests,
overdue and due-soon flags, erasure requests in the same register, metrics, refusals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from ledger.application.service import Ledger, LedgerReader
from ledger.process.settings import Settings
from tests.history import ALICE, BOB, CAROL, catch_up, ledger, reader, subject_id
from tests.integration.test_api import SCOPES, api, call, history, tokens

__all__ = ["api", "history", "ledger", "reader", "tokens"]  # fixtures


def post(api: TestClient, token: str, path: str, body: dict[str, Any]) -> Any:
    return call(api, token, "POST", path, body)


def opened(api: TestClient, token: str, ref: str, kind: str, days_ago: int, **more: Any) -> str:
    arrived = datetime.now(UTC) - timedelta(days=days_ago)
    body = {
        "subject_ref": ref,
        "kind": kind,
        "channel": "email",
        "received_at": arrived.isoformat(),
    }
    response = post(api, token, "/v1/subject/requests", {**body, **more})
    assert response.status_code == 201, response.text
    request_id: str = response.json()["event_id"]
    return request_id


def register(api: TestClient, token: str, query: str = "") -> dict[str, dict[str, Any]]:
    response = call(api, token, "GET", f"/v1/requests{query}")
    assert response.status_code == 200, response.text
    return {r["request_id"]: r for r in response.json()["requests"]}


def test_the_register_flags_what_is_overdue_and_due_soon_and_settles_once(
    api: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    admin = tokens["admin"]
    late = opened(api, admin, ALICE, "ACCESS", 40, details="Alice wants her whole file")
    soon = opened(api, admin, BOB, "RECTIFICATION", 27)
    fresh = opened(api, admin, CAROL, "PORTABILITY", 0, identity_verified=True)
    catch_up(settings_db_only, reader)

    everything = register(api, tokens["reader"])
    assert everything[late]["overdue"] is True and everything[late]["due_soon"] is False
    assert everything[soon]["due_soon"] is True and everything[soon]["overdue"] is False
    assert everything[fresh]["identity_verified"] is True
    assert everything[late]["details"] is None  # the tenant-wide register holds nothing personal
    assert set(register(api, admin, "?state=overdue")) == {late}
    assert set(register(api, admin, "?state=due_soon")) == {soon}
    scraped = api.get("/metrics").text
    assert re.search(r'ledger_requests_overdue\{kind="ACCESS",tenant="acme"\} 1\.0', scraped)
    assert re.search(
        r'ledger_requests_due_soon\{kind="RECTIFICATION",tenant="acme"\} 1\.0', scraped
    )

    extend = {"subject_ref": BOB, "request_id": soon, "months": 2, "reason": "many requests"}
    assert post(api, admin, "/v1/subject/requests/extend", extend).status_code == 200
    again = post(api, admin, "/v1/subject/requests/extend", {**extend, "months": 1})
    assert (again.status_code, again.json()["reason"]) == (409, "extension_exceeded")

    report = post(api, admin, "/v1/subject/report", {"subject_ref": ALICE, "format": "json"})
    answer = report.json()["report_id"]
    bare = {"subject_ref": ALICE, "request_id": late, "outcome": "FULFILLED"}
    unnamed = post(api, admin, "/v1/subject/requests/complete", bare)
    assert (unnamed.status_code, unnamed.json()["reason"]) == (422, "schema_invalid")
    wrong = {**bare, "resolved_by_event_id": late}  # the request itself answers nothing
    mismatch = post(api, admin, "/v1/subject/requests/complete", wrong)
    assert (mismatch.status_code, mismatch.json()["reason"]) == (409, "resolution_mismatch")
    done = {**bare, "resolved_by_event_id": answer}
    assert post(api, admin, "/v1/subject/requests/complete", done).status_code == 200
    twice = post(api, admin, "/v1/subject/requests/complete", done)
    assert (twice.status_code, twice.json()["reason"]) == (409, "request_settled")
    refuse = {"subject_ref": CAROL, "request_id": fresh, "outcome": "REFUSED"}
    bare = post(api, admin, "/v1/subject/requests/complete", refuse)
    assert (bare.status_code, bare.json()["reason"]) == (422, "schema_invalid")
    refuse["reason"] = "Carol asked for this report yesterday"
    assert post(api, admin, "/v1/subject/requests/complete", refuse).status_code == 200
    catch_up(settings_db_only, reader)

    settled = register(api, admin, "?state=all")
    assert (settled[late]["status"], settled[late]["resolution_event_id"]) == ("fulfilled", answer)
    assert settled[late]["overdue"] is False  # settled late, but settled
    assert settled[soon]["extended_months"] == 2
    assert settled[soon]["extensions"][0]["reason"] == "many requests"
    arrived = datetime.fromisoformat(settled[soon]["received_at"])
    due = datetime.fromisoformat(settled[soon]["due_at"])
    assert 88 <= (due - arrived).days <= 92  # three calendar months
    assert settled[fresh]["status"] == "refused"
    carols = call(api, admin, "GET", f"/v1/subjects/{subject_id(ledger, CAROL)}/requests").json()
    assert carols["requests"][0]["reason"] == "Carol asked for this report yesterday"
    alices = call(
        api, tokens["reader"], "GET", f"/v1/subjects/{subject_id(ledger, ALICE)}/requests"
    )
    assert alices.json()["requests"][0]["details"] is None  # not for a reader


def test_an_erasure_request_is_in_the_register_and_settles_with_the_workflow(
    api: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    admin = tokens["admin"]
    hold = {"subject_ref": BOB, "hold_reference": "case-1"}
    assert post(api, admin, "/v1/subject/legal-holds", hold).status_code == 201
    erased = post(api, admin, "/v1/subject/erasure", {"subject_ref": BOB, "source": "letter"})
    request_id = erased.json()["event_id"]
    catch_up(settings_db_only, reader)
    entries = register(api, admin, "?state=all&kind=ERASURE")
    assert len(entries) == 2  # Dave's, fulfilled in the history, and Bob's
    entry = entries[request_id]
    assert entry["channel"] == "letter"
    assert (entry["status"], entry["refusal_code"]) == ("refused", "legal_hold")
    complete = {
        "subject_ref": BOB,
        "request_id": request_id,
        "outcome": "FULFILLED",
        "resolved_by_event_id": request_id,
    }
    by_hand = post(api, admin, "/v1/subject/requests/complete", complete)
    assert (by_hand.status_code, by_hand.json()["reason"]) == (409, "request_completed_by_erasure")


def test_only_admin_keys_may_record_requests(api: TestClient, tokens: dict[str, str]) -> None:
    body = {"subject_ref": ALICE, "kind": "ACCESS", "channel": "email"}
    for scope in set(SCOPES) - {"admin"}:
        assert post(api, tokens[scope], "/v1/subject/requests", body).status_code == 403
    future = {**body, "received_at": (datetime.now(UTC) + timedelta(days=3)).isoformat()}
    refused = post(api, tokens["admin"], "/v1/subject/requests", future)
    assert refused.status_code == 422 and "future" in refused.json()["detail"]


def test_an_erasure_closes_the_subjects_other_open_requests(
    api: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    admin = tokens["admin"]
    access = opened(api, admin, ALICE, "ACCESS", 3)
    bobs = opened(api, admin, BOB, "ACCESS", 3)
    erased = post(api, admin, "/v1/subject/erasure", {"subject_ref": ALICE})
    assert erased.status_code == 202
    catch_up(settings_db_only, reader)
    entries = register(api, admin, "?state=all")
    assert (entries[access]["status"], entries[access]["refusal_code"]) == (
        "closed",
        "subject_erased",
    )
    assert entries[access]["overdue"] is False
    assert entries[bobs]["status"] == "open"  # another subject's request is untouched
    assert access not in register(api, admin)  # no longer open
