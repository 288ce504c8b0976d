"""The Avro contract ⇄ commands: content rules, personal fields, and outbound ledger records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.relay import event_type
from ledger.domain.rules import InvalidEvent
from ledger.domain.values import LegalBasis
from ledger.wire import avro, contract
from ledger.wire.contract import Command
from schemas import SCHEMA_DIR
from tests.builders import (
    IP,
    REF,
    USER_AGENT,
    collect,
    complete,
    define_purpose,
    disclose,
    erase,
    extend,
    grant,
    grounds,
    hold,
    lift,
    memory_ledger,
    object_to,
    open_request,
    rectify,
    release,
    restrict,
    verify,
    withdraw,
)
from tests.sealing import received_in_clear

EXAMPLES = {
    "PurposeDefined": define_purpose(),
    "ConsentGranted": grant(REF),
    "ConsentWithdrawn": withdraw(REF),
    "PersonalDataCollected": collect(REF),
    "DataDisclosed": disclose(REF),
    "ErasureRequested": erase(REF),
    "LegalHoldPlaced": hold(REF),
    "LegalHoldReleased": release(REF),
    "ProcessingRestricted": restrict(REF),
    "RestrictionLifted": lift(REF),
    "ObjectionRaised": object_to(REF),
    "CompellingGroundsRecorded": grounds(REF),
    "PersonalDataRectified": rectify(REF, "e-1"),
    "RequestOpened": open_request(REF),
    "RequestIdentityVerified": verify(REF, "r-1"),
    "RequestExtended": extend(REF, "r-1"),
    "RequestCompleted": complete(REF, "r-1", "e-1"),
}
SUBJECT_KINDS = sorted(contract.SUBJECT_TYPES)
PERSONAL_VALUES = {
    "subject_ref": REF,
    "ip_address": IP,
    "user_agent": USER_AGENT,
    "evidence": "signed by Alice Example",
    "description": "Alice's home address, 12 Rose Lane",
    "note": "alice.private@example.org",
    "reason": "Alice moved to Lisbon",
}


def _record(cmd: Command) -> dict[str, Any]:
    return contract.record_from_command(cmd)


def _with_envelope(cmd: Command, **changes: Any) -> dict[str, Any]:
    record = _record(cmd)
    record["envelope"].update(changes)
    return record


def _refused(kind: str, record: dict[str, Any]) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as raised:
        contract.command_from_record(kind, record)
    assert raised.value.code == "schema_invalid"
    return raised.value


@pytest.mark.parametrize("kind", SUBJECT_KINDS)
@pytest.mark.parametrize("missing", [None, ""])
def test_subject_events_need_a_subject_ref(kind: str, missing: str | None) -> None:
    record = _with_envelope(EXAMPLES[kind], subject_ref=missing)
    assert "subject_ref" in _refused(kind, record).detail


def test_purpose_definitions_must_not_name_a_subject() -> None:
    record = _with_envelope(define_purpose(), subject_ref=REF)
    error = _refused("PurposeDefined", record)
    assert "subject_ref" in error.detail
    assert REF not in error.detail


@pytest.mark.parametrize(
    "tenant", ["Acme", "acme corp", "-acme", "_acme", "acme!", "a" * 64, "ácme"]
)
def test_bad_tenant_codes_are_refused(tenant: str) -> None:
    error = _refused("ConsentGranted", _with_envelope(grant(REF), tenant=tenant))
    assert "tenant" in error.detail


def test_longest_tenant_code_is_accepted() -> None:
    cmd = contract.command_from_record(
        "ConsentGranted", _with_envelope(grant(REF), tenant="a" * 63)
    )
    assert cmd.envelope.tenant == "a" * 63


@pytest.mark.parametrize("purpose", ["Newsletter", "news letter", ".newsletter", "", "x" * 101])
@pytest.mark.parametrize("kind", ["PurposeDefined", "ConsentGranted", "DataDisclosed"])
def test_bad_purpose_codes_are_refused(kind: str, purpose: str) -> None:
    record = _record(EXAMPLES[kind])
    record["purpose"] = purpose
    assert "purpose" in _refused(kind, record).detail


def test_occurred_at_more_than_a_day_ahead_is_refused() -> None:
    too_late = datetime.now(UTC) + timedelta(days=1, minutes=5)
    error = _refused("ConsentGranted", _with_envelope(grant(REF), occurred_at=too_late))
    assert "occurred_at" in error.detail


def test_occurred_at_less_than_a_day_ahead_is_accepted() -> None:
    soon = datetime.now(UTC) + timedelta(hours=23)
    cmd = contract.command_from_record(
        "ConsentGranted", _with_envelope(grant(REF), occurred_at=soon)
    )
    assert cmd.envelope.occurred_at == soon


@pytest.mark.parametrize("basis", [b for b in LegalBasis if b is not LegalBasis.CONSENT])
def test_a_purpose_under_another_basis_than_consent_may_have_no_consent_text(
    basis: LegalBasis,
) -> None:
    record = _record(define_purpose("payroll", "", text="", basis=basis))
    cmd = contract.command_from_record("PurposeDefined", record)
    assert (cmd.facts["consent_text"], cmd.facts["consent_text_version"]) == ("", "")
    with_text = _record(define_purpose("payroll", "2026-01", text="Why we pay you", basis=basis))
    assert contract.command_from_record("PurposeDefined", with_text).facts["consent_text"]


@pytest.mark.parametrize(("text", "version"), [("", "1"), ("Send me news", ""), ("", "")])
def test_a_consent_purpose_needs_its_consent_text_and_version(text: str, version: str) -> None:
    record = _record(define_purpose("newsletter", version, text=text))
    detail = _refused("PurposeDefined", record).detail
    assert "consent_text" in detail and "CONSENT" in detail


@pytest.mark.parametrize(("text", "version"), [("", "1"), ("Payroll", ""), ("  ", "1")])
def test_consent_text_and_version_go_together_under_any_basis(text: str, version: str) -> None:
    record = _record(define_purpose("payroll", version, text=text, basis=LegalBasis.CONTRACT))
    assert "consent_text" in _refused("PurposeDefined", record).detail


@pytest.mark.parametrize("categories", [[], [""], ["contact.email", "  "]])
@pytest.mark.parametrize("kind", ["PersonalDataCollected", "DataDisclosed"])
def test_categories_must_name_at_least_one_category(kind: str, categories: list[str]) -> None:
    record = _record(EXAMPLES[kind])
    record["categories"] = categories
    assert "categories" in _refused(kind, record).detail


@pytest.mark.parametrize("kind", ["PersonalDataCollected", "DataDisclosed"])
def test_categories_are_bounded_in_number_and_length(kind: str) -> None:
    record = _record(EXAMPLES[kind])
    record["categories"] = [f"category.{i}" for i in range(contract.MAX_CATEGORIES)]
    assert contract.command_from_record(kind, record).facts["categories"] == record["categories"]
    record["categories"].append("one.too.many")
    assert "categories" in _refused(kind, record).detail
    record["categories"] = ["x" * 101]
    assert "categories" in _refused(kind, record).detail


@pytest.mark.parametrize("field", ["ip_address", "user_agent", "evidence"])
def test_a_sealed_value_is_refused_by_a_reader_without_ingest_keys(field: str) -> None:
    record = _record(grant(REF))
    record[field] = {
        "scheme": "A256GCM-subject-v1",
        "key_id": "some-key",
        "nonce": b"\x00" * 12,
        "ciphertext": b"\x01" * 32,
    }
    message = avro.encode("ConsentGranted", record)  # the wire contract allows it...
    with pytest.raises(InvalidEvent, match=field) as raised:  # ...the ledger does not
        contract.command_from_message(message)
    assert REF not in raised.value.detail


def test_a_sealed_subject_ref_is_refused_by_a_reader_without_ingest_keys() -> None:
    sealed = {"scheme": "A256GCM-subject-v1", "key_id": "k", "nonce": b"n", "ciphertext": b"c"}
    message = avro.encode("ConsentGranted", _with_envelope(grant(REF), subject_ref=sealed))
    with pytest.raises(InvalidEvent, match="subject_ref"):
        contract.command_from_message(message)


def test_an_over_long_personal_value_is_refused_without_echoing_it() -> None:
    long_agent = "Mozilla/5.0 alice@example.com " * 400
    error = _refused("ConsentGranted", _record(grant(REF, user_agent=long_agent)))
    assert "user_agent" in error.detail
    assert "alice@example.com" not in error.detail


def _personal_in_avsc(name: str) -> frozenset[str]:
    raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
    return frozenset(f["name"] for f in raw.get("fields", []) if f.get("personal") is True)


@pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.avsc")), ids=lambda p: p.stem)
def test_personal_fields_are_exactly_those_marked_in_the_schema(path: Any) -> None:
    assert avro.schema(path.stem).personal_fields == _personal_in_avsc(path.stem)


@pytest.mark.parametrize("kind", contract.INGEST_TYPES)
def test_commands_carry_exactly_the_marked_fields_as_personal(kind: str) -> None:
    decoded = contract.command_from_record(kind, _record(EXAMPLES[kind]))
    assert set(decoded.personal) == _personal_in_avsc(f"compliance.{kind}")
    assert contract.personal_fields(kind) == _personal_in_avsc(f"compliance.{kind}")
    assert not set(decoded.facts) & set(decoded.personal)


def _full_commands() -> list[Command]:
    return [
        define_purpose("support", "2", basis=LegalBasis.CONTRACT, required=True, description="d"),
        grant(REF, evidence=PERSONAL_VALUES["evidence"]),
        grant(REF, ip_address=None, user_agent=None),
        withdraw(REF, evidence=PERSONAL_VALUES["evidence"]),
        collect(REF, categories=["contact.email", "identity.name"], description="Alice's CV"),
        disclose(REF, basis=LegalBasis.LEGAL_OBLIGATION, note=PERSONAL_VALUES["note"]),
        erase(REF, reason=PERSONAL_VALUES["reason"]),
        restrict(REF, ["newsletter", "analytics"], grounds="LEGAL_CLAIMS", note="Alice's case"),
        lift(REF, note=PERSONAL_VALUES["note"]),
        object_to(REF, reason=PERSONAL_VALUES["reason"]),
        grounds(REF),
        rectify(REF, "e-1", "evidence", PERSONAL_VALUES["evidence"], reason="typo"),
        open_request(REF, "PORTABILITY", details=PERSONAL_VALUES["reason"]),
        verify(REF, "r-1"),
        extend(REF, "r-1", 2),
        complete(REF, "r-1", outcome="REFUSED", reason=PERSONAL_VALUES["reason"]),
    ]


@pytest.mark.parametrize("cmd", _full_commands(), ids=lambda c: c.kind)
def test_command_to_record_and_back_is_the_same_command(cmd: Command) -> None:
    record = _record(cmd)
    assert contract.command_from_record(cmd.kind, record) == received_in_clear(cmd)
    assert contract.command_from_message(avro.encode(cmd.kind, record)) == received_in_clear(cmd)


@pytest.mark.parametrize("cmd", _full_commands(), ids=lambda c: c.kind)
def test_record_to_command_and_back_is_the_same_record(cmd: Command) -> None:
    _, record = avro.decode(avro.encode(cmd.kind, _record(cmd)))
    assert _record(contract.command_from_record(cmd.kind, record)) == record


@pytest.mark.parametrize(
    ("cmd", "named"),
    [
        (grounds(REF, reasoning=None), "reasoning"),
        (restrict(REF, ["Not A Code"]), "purposes[]"),
        (restrict(REF, reference=" "), "restriction_reference"),
        (grounds(REF, reference=""), "grounds_reference"),
        (rectify(REF, "e-1", value=None), "value"),
        (rectify(REF, "e-1", "subject_ref"), "field must be one of"),
        (rectify(REF, " "), "corrects_event_id"),
        (extend(REF, "r-1", 3), "months"),
        (open_request(REF, "GOSSIP"), "kind"),
        (complete(REF, "r-1", outcome="MAYBE"), "outcome"),
    ],
    ids=[
        "grounds-without-reasoning",
        "bad-purpose",
        "blank-reference",
        "blank-grounds-ref",
        "correction-without-value",
        "uncorrectable-field",
        "blank-target",
        "three-months",
        "unknown-kind",
        "unknown-outcome",
    ],
)
def test_rights_events_are_refused_without_what_they_need(cmd: Command, named: str) -> None:
    assert named in _refused(cmd.kind, _record(cmd)).detail


def test_legal_basis_becomes_the_enum() -> None:
    cmd = contract.command_from_record("DataDisclosed", _record(disclose(REF)))
    assert cmd.facts["legal_basis"] is LegalBasis.CONSENT


def test_unknown_ingest_type_is_refused() -> None:
    with pytest.raises(avro.UnknownSchema):
        contract.command_from_record("SubjectRegistered", {"tenant": "acme"})


def _recorded_ledger_records() -> list[tuple[dict[str, Any], bytes]]:
    """Every event a small in-memory history produces, as LedgerRecord and its encoding."""
    ledger = memory_ledger()
    ledger.register_tenant("acme", "Acme Ltd", allow_plaintext_ingest=True)
    outcomes = ledger.record(
        [
            define_purpose(),
            define_purpose("analytics", "", text="", basis=LegalBasis.LEGITIMATE_INTERESTS),
            grant(REF, evidence=PERSONAL_VALUES["evidence"]),
            collect(REF, "newsletter", "c-1", description=PERSONAL_VALUES["description"]),
            disclose(REF, note=PERSONAL_VALUES["note"]),
            withdraw(REF, evidence=PERSONAL_VALUES["evidence"]),
            rectify(REF, "c-1", value=PERSONAL_VALUES["description"]),
            restrict(REF, note=PERSONAL_VALUES["note"]),
            lift(REF, note=PERSONAL_VALUES["note"]),
            object_to(REF, reason=PERSONAL_VALUES["reason"]),
            grounds(REF, reasoning=PERSONAL_VALUES["reason"]),
            erase(REF, reason=PERSONAL_VALUES["reason"]),
        ]
    )
    assert [o.status for o in outcomes] == ["recorded"] * 12
    out = []
    for n in ledger.store.select_notifications(1, 100):
        record = contract.ledger_record(
            sequence=n.id,
            event_type=event_type(n.topic),
            aggregate_id=n.originator_id,  # type: ignore[arg-type]
            aggregate_version=n.originator_version,
            state=ledger.mapper.transcoder.decode(n.state),
        )
        out.append((record, avro.encode("LedgerRecord", record)))
    return out


def test_ledger_records_encode_as_ledger_record_for_every_event_type() -> None:
    records = _recorded_ledger_records()
    decoded = [avro.decode(message) for _, message in records]
    assert {s.name for s, _ in decoded} == {"compliance.LedgerRecord"}
    assert [r["event_type"] for _, r in decoded] == [
        "TenantRegistered",
        "IngestPolicySet",
        "PurposeDefined",
        "PurposeDefined",
        "SubjectRegistered",
        "ConsentGranted",
        "PersonalDataCollected",
        "DataDisclosed",
        "ConsentWithdrawn",
        "PersonalDataRectified",
        "ChangeNoticeDue",
        "ProcessingRestricted",
        "ChangeNoticeDue",
        "RestrictionLifted",
        "ChangeNoticeDue",
        "ObjectionRaised",
        "CompellingGroundsRecorded",
        "ErasureRequested",
        "KeysShredded",
    ]
    assert [r["sequence"] for _, r in decoded] == list(range(1, 20))
    assert {r["tenant"] for _, r in decoded} == {"acme"}
    for _, record in decoded:
        name, body = record["event"]
        assert name == f"compliance.{record['event_type']}"
        assert body["tenant" if "tenant" in body else "envelope"]


def test_ledger_records_hold_personal_values_only_sealed() -> None:
    sealed_fields = {"scheme", "key_id", "nonce", "ciphertext"}
    for record, message in _recorded_ledger_records():
        for name, value in PERSONAL_VALUES.items():
            assert value.encode() not in message, (record["event_type"], name)
        _, body = record["event"]
        for name in avro.schema(record["event_type"]).personal_fields:
            assert body[name] is None or set(body[name]) == sealed_fields
        assert body.get("envelope", {}).get("subject_ref") is None


def test_ledger_record_of_a_subject_event_carries_its_envelope() -> None:
    records = {r["event_type"]: r for r, _ in _recorded_ledger_records()}
    _, body = records["DataDisclosed"]["event"]
    envelope = body["envelope"]
    assert (envelope["tenant"], envelope["producer"]) == ("acme", "crm")
    assert envelope["occurred_at"] == disclose(REF).envelope.occurred_at
    assert body["legal_basis"] == "CONSENT"
