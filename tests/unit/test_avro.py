"""Single-object encoding: header, fingerprint, round trip, and what is refused."""

from __future__ import annotations

import struct

import pytest
from fastavro.schema import to_parsing_canonical_form

from ledger.wire import avro, contract
from tests.builders import (
    IP,
    REF,
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
    object_to,
    open_request,
    rectify,
    release,
    restrict,
    verify,
    withdraw,
)

# CRC-64-AVRO as the Avro specification gives it ("Schema Fingerprints"), written out here so
# the test does not trust fastavro's own implementation.
EMPTY = 0xC15D213AA4D7A795
MASK = 0xFFFF_FFFF_FFFF_FFFF


def _fp_table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp & MASK)
    return table


FP_TABLE = _fp_table()


def fingerprint64(data: bytes) -> int:
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


INGEST_COMMANDS = {
    "PurposeDefined": define_purpose(),
    "ConsentGranted": grant(REF, evidence="form-4711 signed by Alice"),
    "ConsentWithdrawn": withdraw(REF, evidence="alice@example.com wrote in"),
    "PersonalDataCollected": collect(REF, description="Alice's home address"),
    "DataDisclosed": disclose(REF, note="sent to alice@example.com's employer"),
    "ErasureRequested": erase(REF, reason="Alice is moving abroad"),
    "LegalHoldPlaced": hold(REF, note="Alice's lawsuit against acme"),
    "LegalHoldReleased": release(REF),
    "ProcessingRestricted": restrict(REF, ["newsletter"], note="Alice disputes her address"),
    "RestrictionLifted": lift(REF, note="Alice's address corrected"),
    "ObjectionRaised": object_to(REF, reason="Alice does not want to be profiled"),
    "CompellingGroundsRecorded": grounds(REF, reasoning="Alice's account shows fraud"),
    "PersonalDataRectified": rectify(REF, "e-1", reason="Alice moved"),
    "RequestOpened": open_request(REF, details="Alice wants her file"),
    "RequestIdentityVerified": verify(REF, "r-1"),
    "RequestExtended": extend(REF, "r-1", 2),
    "RequestCompleted": complete(REF, "r-1", outcome="REFUSED", reason="Alice asked twice"),
}


def test_our_crc64_matches_published_vectors() -> None:
    assert fingerprint64(b'"int"').to_bytes(8, "little").hex() == "8f5c393f1ad57572"
    assert fingerprint64(b'"long"').to_bytes(8, "little").hex() == "b71df49344e154d0"


@pytest.mark.parametrize("kind", sorted(INGEST_COMMANDS))
def test_header_is_marker_and_little_endian_crc64_of_canonical_form(kind: str) -> None:
    message = avro.encode(kind, contract.record_from_command(INGEST_COMMANDS[kind]))
    canonical = to_parsing_canonical_form(avro.schema(kind).parsed)
    expected = struct.pack("<Q", fingerprint64(canonical.encode()))
    assert message[:2] == b"\xc3\x01"
    assert message[2:10] == expected
    assert avro.schema(kind).fingerprint == expected


def test_every_schema_has_a_distinct_fingerprint() -> None:
    fingerprints = [s.fingerprint for s in avro.registry().values()]
    assert len(set(fingerprints)) == len(fingerprints)


@pytest.mark.parametrize("kind", contract.INGEST_TYPES)
def test_every_ingest_schema_round_trips(kind: str) -> None:
    record = contract.record_from_command(INGEST_COMMANDS[kind])
    schema, decoded = avro.decode(avro.encode(kind, record))
    assert schema.name == f"compliance.{kind}"
    assert decoded == record


def _message() -> bytes:
    return avro.encode("ConsentGranted", contract.record_from_command(grant(REF)))


def test_message_without_marker_is_refused() -> None:
    message = _message()
    with pytest.raises(avro.UndecodableMessage, match="marker"):
        avro.decode(b"\x00\x01" + message[2:])
    with pytest.raises(avro.UndecodableMessage, match="marker"):
        avro.decode(message[:5])


def test_unknown_fingerprint_is_refused() -> None:
    message = _message()
    unknown = bytes(b ^ 0xFF for b in message[2:10])
    with pytest.raises(avro.UnknownSchema, match=unknown.hex()):
        avro.decode(message[:2] + unknown + message[10:])


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_body_is_refused(cut: int) -> None:
    with pytest.raises(avro.UndecodableMessage, match="does not decode"):
        avro.decode(_message()[:-cut])


def test_header_without_body_is_refused() -> None:
    with pytest.raises(avro.UndecodableMessage):
        avro.decode(_message()[: avro.HEADER_LENGTH])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(avro.UndecodableMessage, match="3 trailing bytes"):
        avro.decode(_message() + b"\x00\x02\x04")


def test_encode_refuses_a_record_that_does_not_match() -> None:
    record = contract.record_from_command(grant(REF))
    record["ip_address"] = 203_000_113_007
    with pytest.raises(avro.InvalidRecord):
        avro.encode("ConsentGranted", record)


def test_unknown_schema_name_is_refused() -> None:
    with pytest.raises(avro.UnknownSchema):
        avro.schema("ConsentGiven")


@pytest.mark.parametrize(
    ("path", "bad_value", "field"),
    [
        (("ip_address",), {"street": IP}, "ip_address"),
        (("user_agent",), 42, "user_agent"),
        (("envelope", "subject_ref"), [REF], "subject_ref"),
        (("envelope", "occurred_at"), REF, "occurred_at"),
        (("source",), None, "source"),
        (("consent_text_version",), REF.encode(), "consent_text_version"),
    ],
)
def test_check_names_the_field_but_never_the_value(
    path: tuple[str, ...], bad_value: object, field: str
) -> None:
    record = contract.record_from_command(grant(REF, ip_address=IP))
    target = record
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = bad_value

    with pytest.raises(avro.InvalidRecord) as raised:
        avro.check("ConsentGranted", record)

    message = str(raised.value)
    assert field in message
    for personal in (REF, IP, repr(bad_value), str(bad_value)):
        assert personal not in message


def test_a_ledger_record_written_before_v2_decodes_to_the_current_shape() -> None:
    import uuid
    from datetime import UTC, datetime

    from tests.sealing import encode_v1

    envelope = {
        "event_id": "e1",
        "tenant": "acme",
        "subject_ref": None,
        "occurred_at": datetime(2026, 11, 1, tzinfo=UTC),
        "producer": "crm",
        "schema_version": 1,
    }
    body = {"envelope": envelope, "purpose": "newsletter", "source": "web", "evidence": None}
    record = {
        "sequence": 5,
        "event_type": "ConsentWithdrawn",
        "aggregate_id": str(uuid.uuid4()),
        "aggregate_version": 2,
        "tenant": "acme",
        "recorded_at": datetime(2026, 11, 1, tzinfo=UTC),
        "event": ("compliance.ConsentWithdrawn", body),
        "chain": None,
    }
    message = encode_v1("LedgerRecord", record)
    assert message[2:10] != avro.schema("LedgerRecord").fingerprint
    schema, decoded = avro.decode(message)
    assert (schema.name, schema.version) == ("compliance.LedgerRecord", 1)
    name, event = decoded["event"]
    assert name == "compliance.ConsentWithdrawn"
    assert event["envelope"] == {**envelope, "seal_session": None}
