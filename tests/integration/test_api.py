"""The query API over the scripted history, on a real PostgreSQL: answers, scopes, tenants."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from ledger.application.service import Ledger, LedgerReader
from ledger.integrity.checkpoint_store import CheckpointTable, make_checkpoint
from ledger.integrity.checkpoints import CheckpointSigner, new_private_key
from ledger.process.settings import Settings
from projections.api import access
from projections.api.app import create_app, prepare
from projections.rebuild import rebuild
from tests import builders as b
from tests.history import (
    ALICE,
    BOB,
    DAVE,
    catch_up,
    ledger,
    reader,
    scripted_history,
    subject_id,
)

__all__ = ["ledger", "reader"]  # fixtures
SCOPES = ("producer", "reader", "auditor", "admin")


@pytest.fixture
def history(ledger: Ledger, reader: LedgerReader, settings_db_only: Settings) -> dict[str, str]:
    ids = scripted_history(ledger)
    catch_up(settings_db_only, reader, sweep=True)
    return ids


@pytest.fixture
def tokens(settings_db_only: Settings, history: dict[str, str]) -> dict[str, str]:
    """One key per scope for acme, and a reader and an admin for globex."""
    prepare(settings_db_only)
    schema = settings_db_only.database_schema
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        made = {s: access.create_key(conn, schema, b.TENANT, [s], "test")[0] for s in SCOPES}
        made["globex"] = access.create_key(conn, schema, "globex", ["admin"], "test")[0]
    return made


@pytest.fixture
def api(settings_db_only: Settings, tokens: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_db_only), raise_server_exceptions=False) as client:
        yield client


def call(api: TestClient, token: str, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    return api.request(method, path, json=body, headers=headers)


def check(api: TestClient, token: str, ref: str, purpose: str) -> dict[str, Any]:
    response = call(
        api, token, "POST", "/v1/purpose-check", {"subject_ref": ref, "purpose": purpose}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_purpose_check_answers_with_reason_and_proof(
    api: TestClient, tokens: dict[str, str], history: dict[str, str]
) -> None:
    producer = tokens["producer"]
    regranted = check(api, producer, ALICE, "newsletter")
    assert (regranted["allowed"], regranted["reason"]) == (True, "consent_granted")
    assert regranted["event_id"] == history["regrant"]
    assert regranted["consent_text_version"] == "2"
    withdrawn = check(api, producer, BOB, "newsletter")
    assert (withdrawn["allowed"], withdrawn["reason"]) == (False, "consent_withdrawn")
    assert withdrawn["event_id"] == history["bob_withdraw"]
    required = check(api, producer, ALICE, "terms")  # its withdrawal was refused
    assert (required["allowed"], required["required"]) == (True, True)
    assert check(api, producer, ALICE, "billing")["reason"] == "legal_basis"
    assert check(api, producer, "nobody@example.com", "newsletter")["reason"] == "no_consent"
    assert check(api, producer, ALICE, "no-such-purpose")["reason"] == "unknown_purpose"
    erased = check(api, producer, DAVE, "newsletter")
    # Dave's reference lookup went with the erasure: the answer says so and nothing more.
    assert (erased["allowed"], erased["reason"]) == (False, "subject_erased")
    assert erased["subject_id"] is None and erased["event_id"] is None


def test_purpose_checks_answer_a_page_as_the_single_check_answers_each_pair(
    api: TestClient, tokens: dict[str, str]
) -> None:
    refs = [ALICE, BOB, DAVE, "carol@example.net", "nobody@example.com"]
    purposes = ["newsletter", "terms", "billing", "no-such-purpose"]
    pairs = [(ref, purpose) for ref in refs for purpose in purposes]
    pairs += [pairs[0], pairs[5]]  # a pair may repeat
    body = {"checks": [{"subject_ref": r, "purpose": p} for r, p in pairs]}

    response = call(api, tokens["producer"], "POST", "/v1/purpose-checks", body)

    assert response.status_code == 200, response.text
    decisions = response.json()["decisions"]
    assert decisions == [check(api, tokens["producer"], r, p) for r, p in pairs]
    reasons = {d["reason"] for d in decisions}
    assert {"consent_granted", "consent_withdrawn", "legal_basis", "no_consent"} <= reasons
    assert {"unknown_purpose", "subject_erased"} <= reasons
    # Another tenant's key asks the same page: its own (empty) catalogue answers.
    other = call(api, tokens["globex"], "POST", "/v1/purpose-checks", body).json()["decisions"]
    assert {d["reason"] for d in other} == {"unknown_purpose"}


@pytest.mark.parametrize("count", [0, 501])
def test_purpose_checks_refuse_an_empty_or_oversized_page(
    api: TestClient, tokens: dict[str, str], count: int
) -> None:
    body = {"checks": [{"subject_ref": ALICE, "purpose": "newsletter"}] * count}
    response = call(api, tokens["producer"], "POST", "/v1/purpose-checks", body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert ALICE not in response.text


def test_consent_state_lists_every_purpose(api: TestClient, tokens: dict[str, str]) -> None:
    response = call(api, tokens["reader"], "POST", "/v1/subject/consents", {"subject_ref": ALICE})
    assert response.status_code == 200
    body = response.json()
    states = {c["purpose"]: c["state"] for c in body["consents"]}
    assert states == {"billing": "never", "newsletter": "granted", "terms": "granted"}
    by_id = call(api, tokens["reader"], "GET", f"/v1/subjects/{body['subject_id']}/consents")
    assert by_id.json() == body


def test_personal_fields_only_for_scopes_that_may_see_them(
    api: TestClient, tokens: dict[str, str]
) -> None:
    def alice_as(scope: str) -> dict[str, Any]:
        body = {"subject_ref": ALICE}
        result: dict[str, Any] = call(
            api, tokens[scope], "POST", "/v1/subject/consents", body
        ).json()
        return result

    reader_view = alice_as("reader")
    assert reader_view["personal_data"] == "withheld"
    assert reader_view["subject_ref"] is None
    assert {c["ip_address"] for c in reader_view["consents"]} == {None}
    auditor_view = alice_as("auditor")
    assert auditor_view["personal_data"] == "visible"
    assert auditor_view["subject_ref"] == ALICE
    newsletter = next(c for c in auditor_view["consents"] if c["purpose"] == "newsletter")
    assert (newsletter["ip_address"], newsletter["user_agent"]) == (b.IP, b.USER_AGENT)


def test_a_shredded_key_reads_as_erased(
    api: TestClient, tokens: dict[str, str], ledger: Ledger, settings_db_only: Settings
) -> None:
    alice = subject_id(ledger, ALICE)
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DELETE FROM {}.subject_keys WHERE subject_id = %s").format(
                sql.Identifier(settings_db_only.database_schema)
            ),
            [alice],
        )
    body = call(api, tokens["admin"], "GET", f"/v1/subjects/{alice}/consents").json()
    assert body["personal_data"] == "erased"
    assert body["subject_ref"] is None
    assert {c["ip_address"] for c in body["consents"]} == {None}
    assert {c["state"] for c in body["consents"]} == {"granted", "never"}  # facts stay


def test_subject_disclosures_default_to_the_last_twelve_months(
    api: TestClient, tokens: dict[str, str]
) -> None:
    body = {"subject_ref": ALICE}
    found = call(api, tokens["reader"], "POST", "/v1/subject/disclosures", body).json()
    assert [d["recipient"] for d in found["disclosures"]] == ["mailer-inc"]
    filtered = {**body, "recipient": "someone-else"}
    none = call(api, tokens["reader"], "POST", "/v1/subject/disclosures", filtered).json()
    assert none["disclosures"] == []


def test_tenant_disclosure_log_pages_and_exports(api: TestClient, tokens: dict[str, str]) -> None:
    auditor, seen, cursor = tokens["auditor"], [], None
    while True:
        path = "/v1/disclosures?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = call(api, auditor, "GET", path).json()
        seen += [item["event_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 3  # within a year: mailer-inc and carol's two
    exported = call(api, auditor, "GET", "/v1/disclosures?format=csv")
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["event_id"] for r in table) == sorted(seen)
    lines = call(api, auditor, "GET", "/v1/disclosures?format=jsonl").text.splitlines()
    assert len(lines) == 3
    bad = call(api, auditor, "GET", "/v1/disclosures?cursor=not-a-cursor")
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"


def test_collections_and_erasure_status(
    api: TestClient, tokens: dict[str, str], history: dict[str, str]
) -> None:
    reader_token = tokens["reader"]
    by_ref = call(api, reader_token, "POST", "/v1/subject/erasure-status", {"subject_ref": DAVE})
    assert by_ref.status_code == 410
    assert DAVE not in by_ref.text
    erasure = call(api, reader_token, "GET", f"/v1/subjects/{history['dave']}/erasure-status")
    status = erasure.json()
    assert (status["key_state"], status["personal_data"]) == ("shredded", "erased")
    assert status["legal_holds"] == []
    [request] = status["erasure_requests"]
    assert (request["event_id"], request["status"], request["overdue"]) == (
        history["erase"],
        "shredded",
        False,
    )
    carol = call(
        api, reader_token, "POST", "/v1/subject/collections", {"subject_ref": "carol@example.net"}
    ).json()
    assert [c["categories"] for c in carol["collections"]] == [["contact.phone"]]


def test_another_tenants_key_sees_nothing(
    api: TestClient, tokens: dict[str, str], ledger: Ledger
) -> None:
    globex, alice = tokens["globex"], subject_id(ledger, ALICE)
    for method, path, body in [
        ("POST", "/v1/subject/consents", {"subject_ref": ALICE}),
        ("GET", f"/v1/subjects/{alice}/consents", None),
        ("GET", f"/v1/subjects/{alice}/disclosures", None),
        ("GET", f"/v1/subjects/{alice}/collections", None),
        ("GET", f"/v1/subjects/{alice}/erasure-status", None),
    ]:
        response = call(api, globex, method, path, body)
        assert response.status_code == 404, path
        assert ALICE not in response.text
    assert call(api, globex, "GET", "/v1/disclosures").json()["items"] == []
    assert check(api, globex, ALICE, "newsletter")["reason"] == "unknown_purpose"
    assert call(api, globex, "GET", "/v1/purposes").json() == []


ENDPOINTS: list[tuple[str, str, Any, set[str]]] = [
    ("POST", "/v1/purpose-check", {"subject_ref": ALICE, "purpose": "newsletter"}, set(SCOPES)),
    (
        "POST",
        "/v1/purpose-checks",
        {"checks": [{"subject_ref": ALICE, "purpose": "newsletter"}]},
        set(SCOPES),
    ),
    ("POST", "/v1/subject/consents", {"subject_ref": ALICE}, {"reader", "auditor", "admin"}),
    ("POST", "/v1/subject/disclosures", {"subject_ref": ALICE}, {"reader", "auditor", "admin"}),
    ("POST", "/v1/subject/collections", {"subject_ref": ALICE}, {"reader", "auditor", "admin"}),
    ("POST", "/v1/subject/erasure-status", {"subject_ref": ALICE}, {"reader", "auditor", "admin"}),
    ("GET", "/v1/subjects/{alice}/consents", None, {"reader", "auditor", "admin"}),
    ("GET", "/v1/subjects/{alice}/disclosures", None, {"reader", "auditor", "admin"}),
    ("GET", "/v1/subjects/{alice}/collections", None, {"reader", "auditor", "admin"}),
    ("GET", "/v1/subjects/{alice}/erasure-status", None, {"reader", "auditor", "admin"}),
    ("GET", "/v1/purposes", None, {"reader", "auditor", "admin"}),
    ("GET", "/v1/disclosures", None, {"auditor", "admin"}),
    ("GET", "/v1/disclosures?format=csv", None, {"auditor", "admin"}),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ENDPOINTS)
def test_every_endpoint_checks_scopes(
    api: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    method: str,
    path: str,
    body: Any,
    allowed: set[str],
) -> None:
    path = path.format(alice=subject_id(ledger, ALICE))
    assert api.request(method, path, json=body).status_code == 401
    wrong = {"Authorization": "Bearer lk_000000000000_" + "x" * 43}
    assert api.request(method, path, json=body, headers=wrong).status_code == 401
    for scope in SCOPES:
        response = call(api, tokens[scope], method, path, body)
        expected = 200 if scope in allowed else 403
        assert response.status_code == expected, (scope, response.text)
        if expected == 403:
            assert response.headers["content-type"] == "application/problem+json"


def test_errors_are_problems_that_never_echo_personal_data(
    api: TestClient, tokens: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    unknown = call(api, tokens["reader"], "POST", "/v1/subject/consents", {"subject_ref": "x@y.z"})
    assert unknown.status_code == 404
    assert unknown.json()["status"] == 404 and "x@y.z" not in unknown.text
    invalid = call(api, tokens["producer"], "POST", "/v1/purpose-check", {"subject_ref": ALICE})
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    assert ALICE not in invalid.text
    out, err = capfd.readouterr()
    assert ALICE not in out + err and "x@y.z" not in out + err


def test_readiness_and_metrics(api: TestClient, reader: LedgerReader) -> None:
    ready = api.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert {p["name"]: p["lag"] for p in body["projections"]} == {
        "consent": 0,
        "records": 0,
        "erasure": 0,
    }
    assert api.get("/healthz").json() == {"status": "ok"}
    scraped = api.get("/metrics").text
    head = reader.recorder.max_notification_id()
    assert f"ledger_events_recorded_total {float(head)}" in scraped
    assert 'ledger_projection_lag_events{projection="consent"} 0.0' in scraped
    assert "ledger_http_request_duration_seconds_bucket" in scraped
    assert api.get("/openapi.json").json()["paths"]["/v1/purpose-check"]["post"]


def test_metrics_show_relay_lag_and_what_no_checkpoint_covers(
    api: TestClient, reader: LedgerReader, settings_db_only: Settings
) -> None:
    head = reader.recorder.max_notification_id()
    reader.store.set_position("relay:compliance.ledger", head - 3)
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        table = CheckpointTable(conn, settings_db_only.database_schema)
        made = make_checkpoint(reader.store, table, CheckpointSigner(new_private_key()), head - 5)
    assert made is not None

    scraped = api.get("/metrics").text

    assert 'ledger_relay_lag_events{topic="compliance.ledger"} 3.0' in scraped
    assert f"ledger_checkpoint_unsigned_events {float(head - made.sequence)}" in scraped
    signed_at = re.search(r"^ledger_checkpoint_last_timestamp_seconds (\S+)$", scraped, re.M)
    assert signed_at is not None and float(signed_at[1]) == made.time_us / 1e6
    assert "ledger_webhook_deliveries" not in scraped  # no notifier has run: no figure


def test_an_answer_is_as_new_as_the_view_whatever_happened_since(
    ledger: Ledger, reader: LedgerReader, settings_db_only: Settings, tokens: dict[str, str]
) -> None:
    """Nothing stands between a check and the view: the check made right after the view
    commits a change answers from it, through a rebuild, a restart and an erasure."""
    ref = "fresh-answers@example.com"
    producer = tokens["producer"]

    def answer(client: TestClient) -> tuple[bool, str]:
        found = check(client, producer, ref, "newsletter")
        return found["allowed"], found["reason"]

    with TestClient(create_app(settings_db_only)) as client:
        assert answer(client) == (False, "no_consent")
        ledger.record([b.grant(ref, "newsletter", "2")])
        catch_up(settings_db_only, reader)
        assert answer(client) == (True, "consent_granted")
        ledger.record([b.withdraw(ref, "newsletter")])
        catch_up(settings_db_only, reader)  # the view commits; the next check sees it
        assert answer(client) == (False, "consent_withdrawn")
        rebuild(settings_db_only, "consent", reader)
        assert answer(client) == (False, "consent_withdrawn")
        ledger.record([b.grant(ref, "newsletter", "2")])
        catch_up(settings_db_only, reader)
        assert answer(client) == (True, "consent_granted")
    with TestClient(create_app(settings_db_only)) as restarted:
        assert answer(restarted) == (True, "consent_granted")
        ledger.record([b.erase(ref)])
        assert answer(restarted) == (False, "subject_erased")  # the ledger's own transaction
