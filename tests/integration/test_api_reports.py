"""Subject access reports over the scripted history: contents, PDF, scopes, ledger record."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import jsonschema
import pypdfium2 as pdfium
from fastapi.testclient import TestClient

from ledger.application.service import Ledger, LedgerReader
from ledger.domain.subject import Subject
from ledger.domain.values import LegalBasis
from ledger.process.settings import Settings
from tests import builders as b
from tests.history import ALICE, CAROL, DAVE, catch_up, ledger, reader, subject_id
from tests.integration.test_api import api, call, history, tokens

__all__ = ["api", "history", "ledger", "reader", "tokens"]  # fixtures
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "subject-report.schema.json").read_text()
)


def report(api: TestClient, token: str, ref: str, fmt: str = "json") -> Any:
    body = {"subject_ref": ref, "format": fmt}
    return call(api, token, "POST", "/v1/subject/report", body)


def json_report(api: TestClient, token: str, ref: str) -> dict[str, Any]:
    response = report(api, token, ref)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    jsonschema.validate(body, SCHEMA)
    return body


def last_event(ledger: Ledger, subject: UUID) -> Any:
    return ledger.subject_events(subject)[-1]


def pdf_text(content: bytes) -> str:
    document = pdfium.PdfDocument(content)
    return "\n".join(page.get_textpage().get_text_range() for page in document)


def test_json_report_holds_consent_history_disclosures_and_erasure_status(
    api: TestClient, tokens: dict[str, str], history: dict[str, str]
) -> None:
    body = json_report(api, tokens["auditor"], ALICE)
    assert (body["report_version"], body["tenant"], body["tenant_name"]) == (1, "acme", "Acme")
    assert (body["personal_data"], body["subject_ref"]) == ("visible", ALICE)
    purposes = {p["purpose"]: p for p in body["purposes"]}
    newsletter = purposes["newsletter"]
    assert (newsletter["state"], newsletter["consent_text_version"]) == ("granted", "2")
    changes = [
        (c["action"], c["consent_text_version"], c["consent_text"]) for c in newsletter["history"]
    ]
    assert changes == [
        ("granted", "1", "Newsletter v1"),
        ("withdrawn", "1", "Newsletter v1"),
        ("granted", "2", "Newsletter v2"),
    ]
    assert newsletter["history"][-1]["event_id"] == history["regrant"] == newsletter["event_id"]
    assert newsletter["history"][0]["source"] == "signup-form"
    assert newsletter["history"][0]["ip_address"] == b.IP
    # the refused withdrawal of a required consent is no part of the history
    assert [c["action"] for c in purposes["terms"]["history"]] == ["granted"]
    assert (purposes["billing"]["state"], purposes["billing"]["history"]) == ("never", [])
    # disclosed to old-bank 400 days ago: older than a year, not listed
    assert [d["recipient"] for d in body["disclosures"]] == ["mailer-inc"]
    assert body["erasure"] == {
        "erased": False,
        "key_state": "active",
        "key_state_since": body["erasure"]["key_state_since"],
        "legal_holds": [],
        "requests": [],
    }
    assert body["requester"]["requested_by"] == "staff"


def test_collections_and_disclosures_of_the_last_year(
    api: TestClient, tokens: dict[str, str]
) -> None:
    body = json_report(api, tokens["admin"], CAROL)
    assert [c["categories"] for c in body["collections"]] == [["contact.phone"]]
    disclosed = [(d["recipient"], d["legal_basis"], d["categories"]) for d in body["disclosures"]]
    assert disclosed == [
        ("mailer-inc", "CONTRACT", ["contact.phone"]),
        ("mailer-inc", "CONTRACT", ["contact.postal"]),
    ]


def test_each_generation_is_recorded_with_the_hash_of_what_was_delivered(
    api: TestClient, tokens: dict[str, str], ledger: Ledger
) -> None:
    alice = subject_id(ledger, ALICE)
    for fmt, scope in (("json", "auditor"), ("pdf", "admin")):
        response = report(api, tokens[scope], ALICE, fmt)
        assert response.status_code == 200
        assert response.headers["content-type"] == f"application/{fmt}"
        assert response.headers["cache-control"] == "no-store"
        digest = hashlib.sha256(response.content).hexdigest()
        event = last_event(ledger, alice)
        assert isinstance(event, Subject.AccessReportGenerated)
        assert event.event_id == response.headers["x-report-id"]
        assert (event.sha256, event.size, event.format) == (digest, len(response.content), fmt)
        assert (event.requested_by, event.scope) == ("staff", scope)
        assert event.producer == f"api:{tokens[scope].split('_')[1]}"
        b64 = base64.b64encode(bytes.fromhex(digest)).decode()
        assert response.headers["repr-digest"] == f"sha-256=:{b64}:"


def test_the_pdf_report_renders_and_reads(
    api: TestClient, tokens: dict[str, str], ledger: Ledger, tmp_path: Path
) -> None:
    alice = subject_id(ledger, ALICE)
    path = f"/v1/subjects/{alice}/report?format=pdf"
    response = call(api, tokens["admin"], "GET", path)
    assert response.status_code == 200
    document = pdfium.PdfDocument(response.content)
    image = document[0].render(scale=2).to_pil().convert("L")
    image.save(tmp_path / "report-page-1.png")  # what a person sees; kept with the test's files
    dark = sum(image.histogram()[:128])
    assert dark > 0.005 * image.width * image.height  # text was drawn, not a blank page
    text = pdf_text(response.content)
    for expected in (
        "Subject access report",
        "Acme (acme)",
        str(alice),
        ALICE,
        "Newsletter v2",
        "withdrawn",
        "mailer-inc",
        "Erasure",
    ):
        assert expected in text, expected
    assert "old-bank" not in text
    metadata = " ".join(document.get_metadata_dict().values())
    assert "Subject access report" in metadata
    assert ALICE not in metadata and str(alice) not in metadata


def test_an_erased_subjects_report_says_erased_and_holds_no_personal_value(
    api: TestClient, tokens: dict[str, str], ledger: Ledger, history: dict[str, str]
) -> None:
    dave = history["dave"]
    gone = report(api, tokens["admin"], DAVE)
    assert gone.status_code == 410 and DAVE not in gone.text
    for fmt in ("json", "pdf"):
        response = call(api, tokens["admin"], "GET", f"/v1/subjects/{dave}/report?format={fmt}")
        assert response.status_code == 200
        text = response.text if fmt == "json" else pdf_text(response.content)
        for personal in (DAVE, b.IP, b.USER_AGENT):
            assert personal not in text
        event = last_event(ledger, UUID(dave))
        assert isinstance(event, Subject.AccessReportGenerated)  # recorded despite erasure
    body = call(api, tokens["admin"], "GET", f"/v1/subjects/{dave}/report").json()
    jsonschema.validate(body, SCHEMA)
    assert (body["personal_data"], body["subject_ref"], body["erasure"]["erased"]) == (
        "erased",
        None,
        True,
    )
    assert [r["event_id"] for r in body["erasure"]["requests"]] == [history["erase"]]
    newsletter = next(p for p in body["purposes"] if p["purpose"] == "newsletter")
    [grant] = newsletter["history"]  # the fact stays, its personal values do not
    assert (grant["action"], grant["ip_address"], grant["user_agent"]) == ("granted", None, None)
    assert "ERASED" in pdf_text(
        call(api, tokens["admin"], "GET", f"/v1/subjects/{dave}/report?format=pdf").content
    )


def test_scopes_and_tenants(api: TestClient, tokens: dict[str, str], ledger: Ledger) -> None:
    alice = subject_id(ledger, ALICE)
    before = len(ledger.subject_events(alice))
    assert report(api, tokens["reader"], ALICE).status_code == 403
    refused = report(api, tokens["producer"], ALICE)  # the tenant has not enabled it
    assert refused.status_code == 403 and ALICE not in refused.text
    by_id = f"/v1/subjects/{alice}/report"
    for scope in ("reader", "producer"):
        assert call(api, tokens[scope], "GET", by_id).status_code == 403
    assert call(api, tokens["globex"], "GET", by_id).status_code == 404
    assert report(api, tokens["globex"], ALICE).status_code == 404
    assert api.post("/v1/subject/report", json={"subject_ref": ALICE}).status_code == 401
    assert len(ledger.subject_events(alice)) == before  # nothing delivered, nothing recorded


def test_subject_self_service_where_the_tenant_enables_it(
    api: TestClient, tokens: dict[str, str], ledger: Ledger
) -> None:
    assert ledger.set_subject_reports(b.TENANT, allow=True)
    assert not ledger.set_subject_reports(b.TENANT, allow=True)  # unchanged: nothing recorded
    body = json_report(api, tokens["producer"], ALICE)
    assert body["requester"]["requested_by"] == "subject"
    assert (body["personal_data"], body["subject_ref"]) == ("visible", ALICE)
    event = last_event(ledger, subject_id(ledger, ALICE))
    assert (event.requested_by, event.scope) == ("subject", "producer")
    alice = subject_id(ledger, ALICE)  # never by id: the portal must know the reference
    assert call(api, tokens["producer"], "GET", f"/v1/subjects/{alice}/report").status_code == 403
    assert ledger.set_subject_reports(b.TENANT, allow=False)
    assert report(api, tokens["producer"], ALICE).status_code == 403


def test_the_report_lists_restrictions_and_objections_in_json_and_pdf(
    api: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    admin = tokens["admin"]
    analytics = b.define_purpose("analytics", "", text="", basis=LegalBasis.LEGITIMATE_INTERESTS)
    assert ledger.record([analytics, b.define_purpose("offers", direct_marketing=True)])
    restrict = {
        "subject_ref": ALICE,
        "restriction_reference": "dispute-4",
        "grounds": "ACCURACY_CONTESTED",
        "note": "Alice disputes her postcode",
    }
    assert call(api, admin, "POST", "/v1/subject/restrictions", restrict).status_code == 201
    for purpose in ("analytics", "offers"):
        body = {"subject_ref": ALICE, "purpose": purpose, "reason": "Alice minds"}
        assert call(api, admin, "POST", "/v1/subject/objections", body).status_code == 201
    grounds = {
        "subject_ref": ALICE,
        "purpose": "analytics",
        "grounds_reference": "lia-7",
        "reasoning": "Alice's account shows fraud",
    }
    assert call(api, admin, "POST", "/v1/subject/objections/grounds", grounds).status_code == 200
    catch_up(settings_db_only, reader)  # the report reads the views

    body = json_report(api, admin, ALICE)
    [restriction] = body["restrictions"]
    assert (restriction["restriction_reference"], restriction["purposes"]) == ("dispute-4", [])
    assert restriction["note"] == "Alice disputes her postcode"
    objections = {o["purpose"]: o for o in body["objections"]}
    assert objections["analytics"]["standing"] is False
    assert objections["analytics"]["reasoning"] == "Alice's account shows fraud"
    assert objections["offers"]["standing"] is True
    assert {p["purpose"]: p["direct_marketing"] for p in body["purposes"]}["offers"] is True
    auditors = json_report(api, tokens["auditor"], ALICE)  # auditors see personal values
    assert auditors["restrictions"][0]["note"] == restriction["note"]

    text = pdf_text(report(api, admin, ALICE, "pdf").content)
    for expected in ("Restrictions and objections", "dispute-4", "every purpose", "lia-7"):
        assert expected in text, expected
