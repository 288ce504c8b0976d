"""Sealed ingest through the ingest consumer, on an in-memory ledger with fake Kafka: v2
(sessions, what the client sends), and v1 messages still accepted."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from consumers import ingest
from ledger.application.service import Ledger
from ledger.domain.values import Sealed
from ledger.keys.crypto_ingest import (
    SESSION_HYBRID,
    SESSION_X25519,
    IngestPrivateKey,
    SealSession,
    SessionSealer,
)
from ledger.wire import avro, contract
from ledger.wire.contract import Command
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
from tests.sealing import (
    encode_v1,
    plaintext_message,
    received_in_clear,
    sealed_message,
    sealed_message_v1,
    sealed_record,
)
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
    holder = record["envelope"] if field in ("subject_ref", "seal_session") else record
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
        _with_sealed(cmd, ledger, "seal_session", lambda s: {**s, "key_id": UNKNOWN_KEY}),
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
    assert copy["envelope"]["subject_ref"] == record["envelope"]["subject_ref"]
    session = SealSession.from_record(copy["envelope"]["seal_session"])
    assert session == SealSession.from_record(record["envelope"]["seal_session"])
    assert all(value.encode() not in sent.value for value in PERSONAL)


def test_a_sealed_message_is_rejected_as_it_came(ledger: Ledger) -> None:
    message = sealed(ledger, grant(REF, purpose="unknown"))
    _, [sent] = process(ledger, message)
    assert (sent.headers["reason"], sent.value) == (b"unknown_purpose", message)
    assert "removed" not in sent.headers


# Sealed ingest v2: sessions.


def _sealer(ledger: Ledger, tenant: str = "acme", **options: Any) -> SessionSealer:
    return SessionSealer(ledger.ingest_keys.public_key_for(tenant), **options)


def _reasons(sent: list[Any]) -> list[bytes]:
    for rejection in sent:
        assert all(value.encode() not in rejection.headers["detail"] for value in PERSONAL)
    return [s.headers["reason"] for s in sent]


@pytest.mark.parametrize("scheme", [SESSION_HYBRID, SESSION_X25519])
def test_messages_of_one_session_open_with_one_key_agreement(
    ledger: Ledger, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real = IngestPrivateKey.open_session
    monkeypatch.setattr(
        IngestPrivateKey,
        "open_session",
        lambda self, tenant, session: opened.append(session.scheme) or real(self, tenant, session),
    )
    sealer = _sealer(ledger, scheme=scheme)
    key = ledger.ingest_keys.public_key_for("acme")
    messages = [
        sealed_message(grant(REF, ip_address=IP, user_agent=USER_AGENT), key, sealer),
        sealed_message(collect(REF), key, sealer),
        sealed_message(grant("bob@example.com", purpose="newsletter"), key, sealer),
    ]
    report, sent = process(ledger, *messages)
    assert (report.recorded, sent) == (3, [])
    assert opened == [scheme]  # one HPKE open for three messages
    assert ledger.ingest_keys.cached_sessions() == 1
    subject = ledger.find_subject("acme", REF)
    assert subject is not None
    granted = ledger.subject_events(subject.id)[1]
    assert ledger.keys.open(subject.id, "ip_address", granted.ip_address) == IP
    assert ledger.keys.open(subject.id, "user_agent", granted.user_agent) == USER_AGENT


def test_a_client_starts_a_new_session_at_its_bounds(ledger: Ledger) -> None:
    now = [1_000.0]
    sealer = _sealer(ledger, max_messages=2, max_seconds=60, clock=lambda: now[0])
    numbers = [sealer.next_message().session.message for _ in range(5)]
    assert numbers == [0, 1, 0, 1, 0] and sealer.sessions_started == 3
    now[0] += 60
    assert sealer.next_message().session.message == 0 and sealer.sessions_started == 4


def test_a_message_beyond_the_ledgers_session_bounds_is_refused(ledger: Ledger) -> None:
    ledger.ingest_keys.session_max_messages = 3
    key = ledger.ingest_keys.public_key_for("acme")
    sealer = _sealer(ledger, max_messages=10)
    in_bounds = [sealed_message(grant(f"s{i}@example.com"), key, sealer) for i in range(3)]
    beyond = sealed_message(grant("s3@example.com"), key, sealer)  # message number 3
    report, sent = process(ledger, *in_bounds, beyond)
    assert (report.recorded, _reasons(sent)) == (3, [b"ingest_session_exceeded"])
    assert b"message 3 of its session" in sent[0].headers["detail"]


def test_a_session_older_than_the_ledgers_bound_is_refused(ledger: Ledger) -> None:
    started = time.time() - 3600 - 5
    sealer = _sealer(ledger, clock=lambda: started, max_seconds=7200)
    key = ledger.ingest_keys.public_key_for("acme")
    old = sealed_message(grant(REF), key, sealer)
    ahead = _sealer(ledger, clock=lambda: time.time() + 600)  # starts after it is sent
    early = sealed_message(grant("bob@example.com"), key, ahead)
    now_ms = int(time.time() * 1000)
    records = [FakeRecord(old, 0, timestamp=now_ms), FakeRecord(early, 1, timestamp=now_ms)]
    report, sent = _process_records(ledger, records)
    assert (report.recorded, _reasons(sent)) == (0, [b"ingest_session_exceeded"] * 2)
    # Judged by when it was sent, not when the ledger reads it: a backlog still opens.
    sent_then = FakeRecord(old, 2, timestamp=int((started + 60) * 1000))
    assert _process_records(ledger, [sent_then])[0].recorded == 1


def test_a_sealed_value_moved_anywhere_else_does_not_open(ledger: Ledger) -> None:
    key = ledger.ingest_keys.public_key_for("acme")
    sealer = _sealer(ledger)
    first = sealed_record(grant(REF, ip_address=IP, user_agent=USER_AGENT), key, sealer)
    second_cmd = grant("bob@example.com", ip_address="198.51.100.1")
    second = sealed_record(second_cmd, key, sealer)
    swapped = {**first, "ip_address": first["user_agent"], "user_agent": first["ip_address"]}
    other_event = {**second, "ip_address": first["ip_address"]}  # same session, message 0's
    renumbered = {
        **first,
        "envelope": {
            **first["envelope"],  # type: ignore[dict-item]
            "seal_session": {**first["envelope"]["seal_session"], "message": 7},  # type: ignore[index]
        },
    }
    other_tenant = {**first, "envelope": {**first["envelope"], "tenant": "legacy"}}  # type: ignore[dict-item]
    no_session = {**first, "envelope": {**first["envelope"], "seal_session": None}}  # type: ignore[dict-item]
    messages = [
        avro.encode("ConsentGranted", r)
        for r in (swapped, other_event, renumbered, other_tenant, no_session)
    ]
    report, sent = process(ledger, *messages)
    assert (report.recorded, _reasons(sent)) == (0, [b"ingest_seal_invalid"] * 5)
    assert b"envelope.seal_session does not open" in sent[3].headers["detail"]
    assert b"carries no envelope.seal_session" in sent[4].headers["detail"]


def test_destroying_an_ingest_key_forgets_its_opened_sessions(ledger: Ledger) -> None:
    key = ledger.ingest_keys.public_key_for("acme")
    sealer = _sealer(ledger)
    assert process(ledger, sealed_message(grant(REF), key, sealer))[0].recorded == 1
    assert ledger.ingest_keys.cached_sessions() == 1
    ledger.ingest_keys.rotate()
    ledger.ingest_keys.retention = timedelta(0)
    ledger.ingest_keys.destroy_expired()
    assert ledger.ingest_keys.cached_sessions() == 0
    _, sent = process(ledger, sealed_message(collect(REF), key, sealer))
    assert _reasons(sent) == [b"ingest_key_destroyed"]


def test_the_session_cache_is_bounded(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ledger.keys.ingest_keys.SESSION_CACHE_SIZE", 2)
    key = ledger.ingest_keys.public_key_for("acme")
    messages = [sealed_message(grant(f"s{i}@example.com"), key) for i in range(4)]  # 4 sessions
    assert process(ledger, *messages)[0].recorded == 4
    assert ledger.ingest_keys.cached_sessions() == 2


def test_a_v1_message_from_an_older_client_is_still_recorded(ledger: Ledger) -> None:
    key = ledger.ingest_keys.public_key_for("acme")
    message = sealed_message_v1(grant(REF, ip_address=IP), key)
    schema, record = avro.decode(message)
    assert schema.version == 1 and record["envelope"]["seal_session"] is None
    report, sent = process(ledger, message)
    assert (report.recorded, sent) == (1, [])
    subject = ledger.find_subject("acme", REF)
    assert subject is not None
    granted = ledger.subject_events(subject.id)[1]
    assert ledger.keys.open(subject.id, "ip_address", granted.ip_address) == IP


def test_a_v1_catalogue_message_is_still_recorded(ledger: Ledger) -> None:
    cmd = define_purpose("analytics")
    record = contract.record_from_command(cmd)
    envelope = {k: v for k, v in record["envelope"].items() if k != "seal_session"}
    assert process(ledger, encode_v1(cmd.kind, {**record, "envelope": envelope}))[0].recorded == 1


def _process_records(ledger: Ledger, records: list[FakeRecord]) -> tuple[Any, list[Any]]:
    consumer, _, producer = consumer_for(ledger)
    return consumer.process(records), producer.sent


def test_a_hybrid_session_to_a_key_made_before_v2_is_refused_saying_so(ledger: Ledger) -> None:
    key = ledger.ingest_keys.public_key_for("acme")
    current = ledger.ingest_keys.current()
    private = ledger.ingest_keys._private_key(current.key_id)
    v1_only = IngestPrivateKey(private.raw()[:32])
    ledger.ingest_keys._private[current.key_id] = v1_only  # as a key made before v2 loads
    _, sent = process(ledger, sealed_message(grant(REF), key))  # the client's hybrid default
    assert _reasons(sent) == [b"ingest_seal_invalid"]
    assert b"has no hybrid KEM key" in sent[0].headers["detail"]
    x25519 = SessionSealer(key, scheme=SESSION_X25519)
    assert process(ledger, sealed_message(grant(REF), key, x25519))[0].recorded == 1


def test_topic_tail_prints_a_sealed_message_without_its_secret_or_ciphertext(
    ledger: Ledger,
) -> None:
    from types import SimpleNamespace

    from ledger.cli.inspect import _describe

    message = sealed(ledger, grant(REF, ip_address=IP))
    record = SimpleNamespace(partition=0, offset=0, headers=[], value=message)
    printed = str(_describe(record))
    session = avro.decode(message)[1]["envelope"]["seal_session"]
    assert "<1168 bytes>" in printed  # the hybrid session's sealed secret
    assert repr(session["secret"][:16])[2:-1] not in printed
    assert all(value not in printed for value in PERSONAL)
