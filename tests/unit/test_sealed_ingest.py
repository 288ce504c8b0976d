"""Sealed ingest through the ingest consumer, on an in-memory ledger with fake Kafka."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from consumers import ingest
from ledger import avro, contract
from ledger.application import Ledger
from ledger.contract import Command
from ledger.domain.values import Sealed
from tests.builders import (
    IP,
    REF,
    USER_AGENT,
    collect,
    define_purpose,
    disclose,
    grant,
    memory_ledger,
)
from tests.sealing import plaintext_message, received_in_clear, sealed_message, sealed_record
from tests.unit.test_ingest_classify import FakeRecord, consumer_for

PERSONAL = [REF, IP, USER_AGENT, "signed by Alice Example", "Alice's CV"]
UNKNOWN_KEY = "ik-20990101-00000000"


@pytest.fixture
def ledger() -> Ledger:
    app = memory_ledger()
    app.register_tenant("acme", "Acme Ltd")  # the default: personal fields only sealed
    app.register_tenant("legacy", "Legacy Ltd", allow_plaintext_ingest=True)
    app.record([define_purpose(), define_purpose(tenant="legacy")])
    return app


def process(ledger: Ledger, *messages: bytes) -> tuple[Any, list[Any]]:
    consumer, _, producer = consumer_for(ledger)
    report = consumer.process([FakeRecord(m, i) for i, m in enumerate(messages)])
    return report, producer.sent


def sealed(ledger: Ledger, cmd: Command) -> bytes:
    return sealed_message(cmd, ledger.ingest_keys.public_key_for(cmd.envelope.tenant))


def test_a_sealed_message_is_recorded_under_the_subject_key(ledger: Ledger) -> None:
    cmd = grant(REF, ip_address=IP, user_agent=USER_AGENT, evidence=PERSONAL[3])
    report, sent = process(ledger, sealed(ledger, cmd), sealed(ledger, collect(REF)))
    assert (report.recorded, report.rejected, sent) == (2, 0, [])
    subject = ledger.find_subject("acme", REF)
    assert subject is not None
    granted = ledger.subject_events(subject.id)[1]
    assert granted.ip_address.scheme == "A256GCM-subject-v1"
    assert ledger.keys.open(subject.id, "ip_address", granted.ip_address) == IP
    assert ledger.keys.open(subject.id, "evidence", granted.evidence) == PERSONAL[3]


def test_the_consumer_decodes_a_sealed_message_to_the_command_the_producer_meant(
    ledger: Ledger,
) -> None:
    cmd = disclose(REF, note="alice.private@example.org")
    decoded = ingest.classify(sealed(ledger, cmd), ledger.ingest_keys)
    assert decoded == cmd  # nothing arrived in clear


def test_personal_fields_in_clear_are_refused_for_a_tenant_that_does_not_allow_them(
    ledger: Ledger,
) -> None:
    report, sent = process(ledger, plaintext_message(grant(REF, user_agent=None)))
    assert (report.recorded, report.rejected) == (0, 1)
    assert sent[0].headers["reason"] == b"plaintext_personal_data"
    detail = sent[0].headers["detail"].decode()
    assert "envelope.subject_ref" in detail and "ip_address" in detail
    assert all(value not in detail for value in PERSONAL)
    assert ledger.find_subject("acme", REF) is None


def test_one_field_in_clear_among_sealed_ones_is_refused(ledger: Ledger) -> None:
    cmd = grant(REF)
    record = sealed_record(cmd, ledger.ingest_keys.public_key_for("acme"))
    record["user_agent"] = USER_AGENT
    decoded = ingest.classify(_encode(cmd, record), ledger.ingest_keys)
    assert isinstance(decoded, Command) and decoded.plaintext_fields == {"user_agent"}
    assert ledger.record([decoded])[0].reason == "plaintext_personal_data"


def test_personal_fields_in_clear_are_recorded_for_a_tenant_that_allows_them(
    ledger: Ledger,
) -> None:
    report, sent = process(ledger, plaintext_message(grant(REF, tenant="legacy")))
    assert (report.recorded, sent) == (1, [])


def test_events_without_personal_fields_need_no_sealing(ledger: Ledger) -> None:
    report, _ = process(ledger, plaintext_message(define_purpose("billing")))
    assert report.recorded == 1


def test_the_policy_can_be_changed_and_is_recorded(ledger: Ledger) -> None:
    assert ledger.set_ingest_policy("acme", allow_plaintext_ingest=True)
    assert not ledger.set_ingest_policy("acme", allow_plaintext_ingest=True)  # unchanged
    assert process(ledger, plaintext_message(grant(REF)))[0].recorded == 1
    assert ledger.set_ingest_policy("acme", allow_plaintext_ingest=False)
    refused = process(ledger, plaintext_message(collect(REF)))[1]
    assert refused[0].headers["reason"] == b"plaintext_personal_data"
    topics = [n.topic for n in ledger.store.select_notifications(1, 100)]
    assert sum(t.endswith("Tenant.IngestPolicySet") for t in topics) == 3  # legacy's + two


def _encode(cmd: Command, record: dict[str, Any]) -> bytes:
    return avro.encode(cmd.kind, record)


def _with_sealed(cmd: Command, ledger: Ledger, field: str, change: Any) -> bytes:
    record = sealed_record(cmd, ledger.ingest_keys.public_key_for("acme"))
    holder = record["envelope"] if field == "subject_ref" else record
    holder[field] = change(holder[field])
    return _encode(cmd, record)


def test_sealed_fields_that_do_not_open_are_rejected_with_their_reason(ledger: Ledger) -> None:
    cmd = grant(REF, ip_address=IP)
    old = ledger.ingest_keys.public_key_for("acme")
    ledger.ingest_keys.rotate()
    ledger.ingest_keys.retention = timedelta(0)
    ledger.ingest_keys.destroy_expired()
    messages = [
        sealed_message(cmd, old),  # sealed to a destroyed key
        _with_sealed(cmd, ledger, "ip_address", lambda s: {**s, "key_id": UNKNOWN_KEY}),
        _with_sealed(
            cmd, ledger, "subject_ref", lambda s: {**s, "ciphertext": s["ciphertext"][:-1]}
        ),
        sealed_message(grant(REF, tenant="legacy"), ledger.ingest_keys.public_key_for("acme")),
    ]
    report, sent = process(ledger, *messages)
    assert (report.recorded, report.rejected) == (0, 4)
    assert [s.headers["reason"] for s in sent] == [
        b"ingest_key_destroyed",
        b"ingest_key_unknown",
        b"ingest_seal_invalid",
        b"ingest_seal_invalid",  # sealed for acme, sent as legacy's
    ]
    for rejection in sent:
        assert all(value.encode() not in rejection.headers["detail"] for value in PERSONAL)


def test_an_unreachable_key_table_retries_the_batch_instead_of_rejecting(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = sealed(ledger, grant(REF))
    ledger.ingest_keys.refresh_s = 0.0

    def unreachable() -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(ledger.ingest_keys.table, "rows", unreachable)
    with pytest.raises(OperationalError):
        process(ledger, message)


def test_the_consumer_destroys_expired_keys_on_start_and_then_hourly(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer, _, _ = consumer_for(ledger)
    calls: list[int] = []
    monkeypatch.setattr(ledger.ingest_keys, "destroy_expired", lambda: calls.append(1) or ["x"])
    now = [1000.0]
    monkeypatch.setattr(ingest.time, "monotonic", lambda: now[0])
    assert consumer.maintain_keys() == ["x"]
    now[0] += ingest.KEY_MAINTENANCE_S - 1
    assert consumer.maintain_keys() == []
    now[0] += 1
    assert consumer.maintain_keys() == ["x"]
    assert len(calls) == 2


def test_a_reader_without_ingest_keys_cannot_read_a_sealed_message(ledger: Ledger) -> None:
    rejection = ingest.classify(sealed(ledger, grant(REF)))
    assert rejection == ingest.Rejection(
        "schema_invalid",
        f"{contract.SUBJECT_REF_FIELD} arrived sealed, and this reader holds no ingest key",
    )


def test_a_plaintext_message_decodes_with_its_fields_marked_in_clear(ledger: Ledger) -> None:
    cmd = grant(REF, user_agent=None)
    assert ingest.classify(plaintext_message(cmd), ledger.ingest_keys) == received_in_clear(cmd)
    assert received_in_clear(cmd).plaintext_fields == {"envelope.subject_ref", "ip_address"}


def test_a_sealed_value_stays_sealed_in_the_stored_events(ledger: Ledger) -> None:
    process(ledger, sealed(ledger, grant(REF, ip_address=IP, user_agent=USER_AGENT)))
    for notification in ledger.store.select_notifications(1, 100):
        assert all(value.encode() not in notification.state for value in PERSONAL)
    subject = ledger.find_subject("acme", REF)
    assert subject is not None
    assert isinstance(ledger.subject_events(subject.id)[0].subject_ref, Sealed)


def test_the_rejected_copy_keeps_sealed_fields_and_drops_those_in_clear(ledger: Ledger) -> None:
    cmd = grant(REF, ip_address=IP, user_agent=USER_AGENT)
    record = sealed_record(cmd, ledger.ingest_keys.public_key_for("acme"))
    record["user_agent"] = USER_AGENT  # one field in clear among sealed ones
    _, [sent] = process(ledger, _encode(cmd, record))
    assert sent.headers["reason"] == b"plaintext_personal_data"
    assert sent.headers["removed"] == b"user_agent"
    _, copy = avro.decode(sent.value)
    assert copy["user_agent"] is None
    assert copy["ip_address"] == record["ip_address"]  # ciphertext, as it came
    assert copy["envelope"] == record["envelope"]
    assert all(value.encode() not in sent.value for value in PERSONAL)


def test_a_sealed_message_is_rejected_as_it_came(ledger: Ledger) -> None:
    message = sealed(ledger, grant(REF, purpose="unknown"))
    _, [sent] = process(ledger, message)
    assert (sent.headers["reason"], sent.value) == (b"unknown_purpose", message)
    assert "removed" not in sent.headers
