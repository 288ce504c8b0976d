"""The Kafka entry points with fakes for Kafka: the ingest consumer and the relay."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError
from kafka.errors import KafkaTimeoutError

from consumers import ingest
from consumers.ingest import IngestConsumer, Rejection, classify
from consumers.relay import Relay, event_type
from ledger.application.service import Ledger
from ledger.domain.values import LegalBasis
from ledger.kafka.consumer import TopicPartition
from ledger.kafka.topics import Topics
from ledger.wire import avro, contract
from ledger.wire.contract import Command
from tests.builders import (
    IP,
    REF,
    USER_AGENT,
    collect,
    define_purpose,
    disclose,
    erase,
    grant,
    memory_ledger,
    withdraw,
)
from tests.fakes import FakeFuture
from tests.sealing import received_in_clear

TOPICS = Topics()
PERSONAL = [REF, IP, USER_AGENT, "alice.private@example.org", "Alice Example"]
PERSONAL_FIELDS = {"ip_address", "user_agent", "evidence", "reason"}


def message(cmd: Command) -> bytes:
    return avro.encode(cmd.kind, contract.record_from_command(cmd))


def acme_ledger() -> Ledger:
    ledger = memory_ledger()
    # These tests are about the consumer's mechanics; their messages carry personal fields
    # in clear, so the tenant allows it (sealed ingest: tests/unit/test_sealed_ingest.py).
    ledger.register_tenant("acme", "Acme Ltd", allow_plaintext_ingest=True)
    ledger.record([define_purpose(), define_purpose("billing", basis=LegalBasis.CONTRACT)])
    return ledger


# classify


def test_a_valid_message_becomes_its_command() -> None:
    cmd = grant(REF)
    assert classify(message(cmd)) == received_in_clear(cmd)


@pytest.mark.parametrize("value", [None, b""])
def test_an_empty_message_is_undecodable(value: bytes | None) -> None:
    assert classify(value) == Rejection("undecodable", "empty message")


@pytest.mark.parametrize(
    "value",
    [b"alice@example.com", b'{"subject_ref": "alice@example.com"}', b"\xc3", b"\xc3\x01"],
)
def test_garbage_is_undecodable(value: bytes) -> None:
    rejection = classify(value)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "undecodable"
    assert REF not in rejection.detail


def test_a_truncated_message_is_undecodable() -> None:
    rejection = classify(message(grant(REF))[:-4])
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "undecodable"


def test_an_unknown_fingerprint_is_an_unknown_schema() -> None:
    valid = message(grant(REF))
    rejection = classify(valid[:2] + b"\x01" * 8 + valid[10:])
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "unknown_schema"


def test_a_ledger_record_sent_to_ingest_is_an_unknown_schema() -> None:
    ledger = acme_ledger()
    notification = ledger.store.select_notifications(1, 1)[0]
    record = contract.ledger_record(
        sequence=notification.id,
        event_type=event_type(notification.topic),
        aggregate_id=notification.originator_id,  # type: ignore[arg-type]
        aggregate_version=notification.originator_version,
        state=ledger.mapper.transcoder.decode(notification.state),
    )
    rejection = classify(avro.encode("LedgerRecord", record))
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "unknown_schema"
    assert "LedgerRecord" in rejection.detail


def test_schema_invalid_content_is_refused_without_its_values() -> None:
    record = contract.record_from_command(grant(REF, user_agent=USER_AGENT))
    record["envelope"]["tenant"] = "Alice Example"
    rejection = classify(avro.encode("ConsentGranted", record))
    assert isinstance(rejection, Rejection)
    assert rejection.reason == "schema_invalid"
    assert "tenant" in rejection.detail
    assert all(value not in rejection.detail for value in PERSONAL)


# IngestConsumer.process


@dataclass
class FakeRecord:
    value: bytes | None
    offset: int
    key: bytes | None = b"k"
    topic: str = TOPICS.ingest
    partition: int = 0
    timestamp: int | None = None  # Kafka record timestamp, ms


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


@dataclass
class FakeProducer:
    fail_after: int | None = None  # the futures of sends after this many raise ``error``
    error: Exception = field(default_factory=lambda: RuntimeError("broker refused the record"))
    sent: list[Sent] = field(default_factory=list)
    flushes: int = 0

    def send(
        self,
        topic: str,
        *,
        key: bytes | None = None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FakeFuture:
        self.sent.append(Sent(topic, key, value, dict(headers or [])))
        if self.fail_after is not None and len(self.sent) > self.fail_after:
            return FakeFuture(self.error)
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1


@dataclass
class FakeConsumer:
    polls: list[dict[Any, list[FakeRecord]]] = field(default_factory=list)
    commits: list[dict[Any, Any]] = field(default_factory=list)
    seeks: list[tuple[Any, int]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=lambda: {"group_id": "test"})

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        return self.polls.pop(0) if self.polls else {}

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.commits.append(offsets)

    def seek(self, partition: Any, offset: int) -> None:
        self.seeks.append((partition, offset))


def consumer_for(ledger: Ledger) -> tuple[IngestConsumer, FakeConsumer, FakeProducer]:
    kafka_consumer, producer = FakeConsumer(), FakeProducer()
    consumer = IngestConsumer(ledger, kafka_consumer, producer, TOPICS)
    return consumer, kafka_consumer, producer


def test_process_records_valid_messages_and_rejects_the_rest_with_context() -> None:
    ledger = acme_ledger()
    consumer, _, producer = consumer_for(ledger)
    garbage = b"alice@example.com wants out"
    records = [
        FakeRecord(message(grant(REF, ip_address=IP)), 10),
        FakeRecord(garbage, 11, key=b"garbage"),
        FakeRecord(message(withdraw(REF, "billing", evidence="Alice Example")), 12),
        FakeRecord(message(grant(REF, tenant="nobody")), 13, partition=2),
        FakeRecord(message(erase("bob@example.org")), 14),
        FakeRecord(message(collect(REF)), 15),
    ]

    report = consumer.process(records)

    assert (report.messages, report.recorded, report.duplicates, report.rejected) == (6, 2, 0, 4)
    assert [s.topic for s in producer.sent] == [TOPICS.rejected] * 4
    assert [(s.headers["reason"], s.key, s.headers.get("removed")) for s in producer.sent] == [
        (b"undecodable", b"garbage", None),
        (b"purpose_not_consent_based", b"k", b"envelope.subject_ref,evidence"),
        (b"unknown_tenant", b"k", b"envelope.subject_ref,ip_address,user_agent"),
        (b"unknown_subject", b"k", b"envelope.subject_ref"),
    ]
    assert producer.sent[0].value == garbage  # not an ingest event: as it came
    for sent, original in zip(producer.sent[1:], records[2:5], strict=True):
        # The rejected copy is the event without the personal fields that came in clear.
        (_, kept), (_, came) = avro.decode(sent.value), avro.decode(original.value or b"")
        cleared = {f: None for f in PERSONAL_FIELDS if f in came}
        assert kept == {**came, "envelope": {**came["envelope"], "subject_ref": None}, **cleared}
        assert all(v.encode() not in sent.value for v in [*PERSONAL, "bob@example.org"])
    assert [
        (s.headers["source.topic"], s.headers["source.partition"], s.headers["source.offset"])
        for s in producer.sent
    ] == [
        (TOPICS.ingest.encode(), b"0", b"11"),
        (TOPICS.ingest.encode(), b"0", b"12"),
        (TOPICS.ingest.encode(), b"2", b"13"),
        (TOPICS.ingest.encode(), b"0", b"14"),
    ]
    assert producer.flushes >= 1
    for sent in producer.sent:
        assert sent.headers["detail"]
        assert "rejected_at" in sent.headers
        for value in [*PERSONAL, "bob@example.org"]:
            assert value.encode() not in sent.headers["detail"]


def test_process_reports_redelivered_messages_as_duplicates() -> None:
    ledger = acme_ledger()
    consumer, _, producer = consumer_for(ledger)
    records = [FakeRecord(message(grant(REF)), 1), FakeRecord(message(collect(REF)), 2)]
    consumer.process(records)

    report = consumer.process(records)

    assert (report.recorded, report.duplicates, report.rejected) == (0, 2, 0)
    assert producer.sent == []


def test_process_with_nothing_to_reject_publishes_nothing() -> None:
    consumer, _, producer = consumer_for(acme_ledger())
    report = consumer.process([FakeRecord(message(grant(REF)), 1)])
    assert report.recorded == 1
    assert (producer.sent, producer.flushes) == ([], 0)


def test_poll_once_commits_the_next_offset_of_each_partition_after_recording() -> None:
    ledger = acme_ledger()
    consumer, kafka_consumer, producer = consumer_for(ledger)
    p0, p1 = TopicPartition(TOPICS.ingest, 0), TopicPartition(TOPICS.ingest, 1)
    kafka_consumer.polls.append(
        {
            p0: [FakeRecord(message(grant(REF)), 4), FakeRecord(b"junk", 5)],
            p1: [FakeRecord(message(grant("bob@example.org")), 9, partition=1)],
        }
    )

    report = consumer.poll_once()

    assert report is not None and report.recorded == 2
    assert len(producer.sent) == 1
    assert len(kafka_consumer.commits) == 1
    assert {tp: meta.offset for tp, meta in kafka_consumer.commits[0].items()} == {p0: 6, p1: 10}


def test_poll_once_rewinds_and_commits_nothing_when_the_database_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = acme_ledger()
    consumer, kafka_consumer, producer = consumer_for(ledger)
    p0 = TopicPartition(TOPICS.ingest, 0)
    kafka_consumer.polls.append(
        {p0: [FakeRecord(message(grant(REF)), 7), FakeRecord(message(collect(REF)), 8)]}
    )

    def unreachable(commands: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(ledger, "record", unreachable)
    monkeypatch.setattr(ingest.time, "sleep", lambda seconds: None)

    assert consumer.poll_once() is None
    assert kafka_consumer.commits == []
    assert kafka_consumer.seeks == [(p0, 7)]
    assert producer.sent == []


def test_poll_once_commits_nothing_when_the_broker_refuses_a_rejection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # kafka-python's flush() returns normally when records failed; only their futures say so.
    consumer, kafka_consumer, producer = consumer_for(acme_ledger())
    producer.fail_after, producer.error = 0, KafkaTimeoutError("rejected topic unavailable")
    p0 = TopicPartition(TOPICS.ingest, 0)
    kafka_consumer.polls.append({p0: [FakeRecord(b"junk", 3), FakeRecord(b"more junk", 4)]})
    monkeypatch.setattr(ingest.time, "sleep", lambda seconds: None)

    consumer.poll_once()

    assert len(producer.sent) == 2
    assert kafka_consumer.commits == []  # the rejections were not published: not done
    assert kafka_consumer.seeks == [(p0, 3)]


# Relay.publish_once


def recorded_history() -> Ledger:
    ledger = acme_ledger()
    outcomes = ledger.record(
        [
            grant(REF, ip_address=IP, user_agent=USER_AGENT),
            grant("bob@example.org"),
            collect(REF, description="Alice Example's CV"),
            disclose(REF, note="alice.private@example.org"),
            erase(REF, reason="Alice Example moved"),
        ]
    )
    assert {o.status for o in outcomes} == {"recorded"}
    return ledger


def test_relay_publishes_every_event_in_order_keyed_by_aggregate() -> None:
    ledger = recorded_history()
    notifications = ledger.store.select_notifications(1, 100)
    producer = FakeProducer()
    relay = Relay(ledger, producer, "compliance.ledger")

    assert relay.publish_once() == len(notifications)

    decoded = [avro.decode(s.value) for s in producer.sent]
    assert {schema.name for schema, _ in decoded} == {"compliance.LedgerRecord"}
    sequences = [record["sequence"] for _, record in decoded]
    assert sequences == sorted(set(sequences))  # strictly increasing
    assert sequences == [n.id for n in notifications]
    assert [s.headers["sequence"] for s in producer.sent] == [str(i).encode() for i in sequences]
    for sent, (_, record), n in zip(producer.sent, decoded, notifications, strict=True):
        assert sent.topic == "compliance.ledger"
        assert sent.key == str(n.originator_id).encode() == record["aggregate_id"].encode()
        assert record["aggregate_version"] == n.originator_version
        assert sent.headers["event_type"] == record["event_type"].encode()
    assert relay.position() == notifications[-1].id
    assert Counter(r["event_type"] for _, r in decoded)["SubjectRegistered"] == 2


def test_relay_publishes_no_personal_value_in_clear() -> None:
    producer = FakeProducer()
    Relay(recorded_history(), producer, "compliance.ledger").publish_once()
    assert producer.sent
    for sent in producer.sent:
        for value in [*PERSONAL, "bob@example.org"]:
            assert value.encode() not in sent.value


def test_relay_continues_from_its_position_in_batches() -> None:
    ledger = recorded_history()
    total = len(ledger.store.select_notifications(1, 100))
    producer = FakeProducer()
    relay = Relay(ledger, producer, "compliance.ledger", batch_size=4)

    published = []
    while count := relay.publish_once():
        published.append(count)
        assert relay.position() == sum(published)

    assert sum(published) == total
    assert all(count <= 4 for count in published)
    sequences = [avro.decode(s.value)[1]["sequence"] for s in producer.sent]
    assert sequences == list(range(1, total + 1))

    ledger.record([grant("carol@example.net")])
    assert relay.publish_once() == 2  # the new subject's registration and its consent
    assert relay.position() == total + 2


def test_relay_position_does_not_move_when_the_broker_refuses_a_record() -> None:
    ledger = recorded_history()
    relay = Relay(ledger, FakeProducer(fail_after=3), "compliance.ledger")

    with pytest.raises(RuntimeError, match="refused"):
        relay.publish_once()
    assert relay.position() == 0

    retry = FakeProducer()
    relay.producer = retry
    assert relay.publish_once() == len(ledger.store.select_notifications(1, 100))
    assert avro.decode(retry.sent[0].value)[1]["sequence"] == 1  # re-sent from the start


def test_event_type_names_registrations_by_their_aggregate() -> None:
    assert event_type("ledger.domain.subject:Subject.ConsentGranted") == "ConsentGranted"
    assert event_type("ledger.domain.subject:Subject.Registered") == "SubjectRegistered"
    assert event_type("ledger.domain.tenant:Tenant.Registered") == "TenantRegistered"
    assert event_type("ledger.domain.tenant:Tenant.PurposeDefined") == "PurposeDefined"
