"""Kafka → ingest → ledger (PostgreSQL) → relay → Kafka, with a real broker and database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from consumers.ingest import IngestConsumer
from consumers.relay import Relay
from ledger.application.service import Ledger
from ledger.client import LedgerClient
from ledger.domain.values import LegalBasis
from ledger.kafka.consumer import make_consumer
from ledger.kafka.producer import make_producer
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings
from ledger.wire import avro, contract
from tests import builders as b
from tests.kafka_helpers import read_topic, wait_until

PERSONAL = (b.REF.encode(), b.IP.encode(), b"bob@example.org")


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    app = open_ledger(settings)
    app.register_tenant(b.TENANT, "Acme")
    yield app
    app.close()


@pytest.fixture
def client(settings: Settings, ledger: Ledger) -> Iterator[LedgerClient]:
    """A producer sealing personal fields to the ledger's ingest key (for an unregistered
    tenant too: one test sends for one)."""
    keys = [ledger.ingest_keys.public_key_for(t) for t in (b.TENANT, "nobody")]
    with LedgerClient(
        settings.require_kafka(), producer="crm", topic=settings.topics.ingest, ingest_key=keys
    ) as producer_client:
        yield producer_client


def ingest_consumer(ledger: Ledger, settings: Settings, batch_size: int = 100) -> IngestConsumer:
    bootstrap = settings.require_kafka()
    return IngestConsumer(
        ledger,
        make_consumer(bootstrap, group=settings.ingest_group),
        make_producer(bootstrap),
        settings.topics,
        batch_size=batch_size,
    )


@pytest.fixture
def ingest(ledger: Ledger, settings: Settings) -> Iterator[IngestConsumer]:
    """An ingest consumer running in a thread, as ``ledger ingest`` runs it."""
    consumer = ingest_consumer(ledger, settings)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    yield consumer
    stop.set()
    thread.join(timeout=10)
    consumer.consumer.close()
    consumer.producer.close()


def recorded(ledger: Ledger, event_ids: list[str]) -> int:
    return len(ledger.store.recorded_receipts([(b.TENANT, e) for e in event_ids]))


def send(client: LedgerClient, *commands: Any) -> list[str]:
    ids = [client.send_command(c) for c in commands]
    client.flush()
    return ids


def test_events_are_recorded_and_relayed_in_ledger_order_as_ciphertext(
    ledger: Ledger, client: LedgerClient, ingest: IngestConsumer, settings: Settings
) -> None:
    purpose = send(client, b.define_purpose())
    wait_until(lambda: recorded(ledger, purpose) == 1, what="purpose recorded")
    ids = send(
        client,
        b.grant(b.REF),
        b.collect(b.REF, description="signed contract"),
        b.disclose(b.REF, note="sent by courier"),
        b.grant("bob@example.org"),
        b.withdraw("bob@example.org"),
    )
    wait_until(lambda: recorded(ledger, ids) == len(ids), what="events recorded")

    producer = make_producer(settings.require_kafka())
    relay = Relay(ledger, producer, settings.topics.ledger)
    published = relay.publish_once()
    producer.close()

    # Tenant, purpose, 2 subject registrations and 5 facts.
    assert published == 9
    records = read_topic(
        settings.require_kafka(), settings.topics.ledger, until=lambda r: len(r) >= 9
    )
    for raw in records:
        assert not any(value in raw.value for value in PERSONAL)
    decoded = [avro.decode(r.value)[1] for r in records]
    assert sorted(d["sequence"] for d in decoded) == list(range(1, 10))
    alice = ledger.find_subject(b.TENANT, b.REF)
    assert alice is not None
    alice_records = [
        (r.key, avro.decode(r.value)[1]) for r in records if r.key == str(alice.id).encode()
    ]
    assert [d["event_type"] for _, d in sorted(alice_records, key=lambda x: x[1]["sequence"])] == [
        "SubjectRegistered",
        "ConsentGranted",
        "PersonalDataCollected",
        "DataDisclosed",
    ]
    assert len({r.partition for r in records if r.key == str(alice.id).encode()}) == 1


def test_bad_messages_go_to_the_rejected_topic_and_the_consumer_keeps_going(
    ledger: Ledger, client: LedgerClient, ingest: IngestConsumer, settings: Settings
) -> None:
    send(client, b.define_purpose("terms", required=True))
    client.send_raw(b"\xc3\x01garbage")
    refused = send(
        client,
        b.grant(b.REF, "terms"),
        b.withdraw(b.REF, "terms"),  # required: refused
        b.grant(b.REF, "terms", tenant="nobody"),  # unknown tenant
        b.disclose(b.REF, "terms", LegalBasis.LEGITIMATE_INTERESTS),  # wrong basis
    )
    later = send(client, b.collect(b.REF, "terms"))
    wait_until(lambda: recorded(ledger, later) == 1, what="a good event after bad ones")

    rejected = read_topic(
        settings.require_kafka(), settings.topics.rejected, until=lambda r: len(r) >= 4
    )
    reasons = sorted(dict(r.headers)["reason"].decode() for r in rejected)
    assert reasons == ["no_legal_basis", "required_consent", "undecodable", "unknown_tenant"]
    for record in rejected:
        headers = dict(record.headers)
        assert headers["source.topic"].decode() == settings.topics.ingest
        assert not any(value in headers["detail"] for value in PERSONAL)
    assert recorded(ledger, refused[:1]) == 1
    counts = ledger.store.counts()  # what the API's /metrics reports
    assert {reason for (outcome, reason) in counts if outcome == "rejected"} == set(reasons)
    assert counts[("recorded", "")] == 3


def test_consent_and_disclosure_are_held_to_the_purposes_catalogued_basis(
    ledger: Ledger, client: LedgerClient, ingest: IngestConsumer, settings: Settings
) -> None:
    """The integrator's case: a purpose catalogued under legitimate interests takes no consent,
    and no disclosure under CONSENT; one under its own basis is recorded."""
    fraud = b.define_purpose("fraud-checks", basis=LegalBasis.LEGITIMATE_INTERESTS)
    wait_until(lambda: recorded(ledger, send(client, fraud)) == 1, what="purpose recorded")
    refused = send(
        client,
        b.grant(b.REF, "fraud-checks"),
        b.disclose(b.REF, "fraud-checks", LegalBasis.CONSENT),
        b.withdraw(b.REF, "fraud-checks"),
    )
    good = send(client, b.disclose(b.REF, "fraud-checks", LegalBasis.LEGITIMATE_INTERESTS))
    wait_until(lambda: recorded(ledger, good) == 1, what="the disclosure under its basis")

    rejected = read_topic(
        settings.require_kafka(), settings.topics.rejected, until=lambda r: len(r) >= 3
    )
    assert sorted(dict(r.headers)["reason"].decode() for r in rejected) == [
        "no_legal_basis",
        "purpose_not_consent_based",
        "purpose_not_consent_based",
    ]
    details = [dict(r.headers)["detail"].decode() for r in rejected]
    assert any("catalogued under LEGITIMATE_INTERESTS" in d for d in details)
    assert recorded(ledger, refused) == 0
    alice = ledger.find_subject(b.TENANT, b.REF)
    assert alice is not None and not alice.has_consent("fraud-checks")


def test_a_purpose_that_asks_no_consent_is_defined_through_kafka_without_consent_text(
    ledger: Ledger, client: LedgerClient, ingest: IngestConsumer, settings: Settings
) -> None:
    defined = client.define_purpose(tenant=b.TENANT, purpose="payroll", legal_basis="CONTRACT")
    # A producer that skips the client's checks: a consent purpose without its text.
    no_text = contract.record_from_command(b.define_purpose("marketing", "", text=""))
    client.send_raw(avro.encode("PurposeDefined", no_text), key=b.TENANT.encode())
    client.flush()
    wait_until(lambda: recorded(ledger, [defined]) == 1, what="the purpose recorded")
    disclosed = send(client, b.disclose(b.REF, "payroll", LegalBasis.CONTRACT))
    wait_until(lambda: recorded(ledger, disclosed) == 1, what="a disclosure under it")

    [rejection] = read_topic(
        settings.require_kafka(), settings.topics.rejected, until=lambda r: len(r) >= 1
    )
    headers = {k: v.decode() for k, v in rejection.headers}
    assert headers["reason"] == "schema_invalid"
    assert "consent_text" in headers["detail"] and "CONSENT" in headers["detail"]
    assert ledger.tenant(b.TENANT).purpose("payroll").texts == {}

    producer = make_producer(settings.require_kafka())
    Relay(ledger, producer, settings.topics.ledger).publish_once()
    producer.close()
    records = read_topic(
        settings.require_kafka(), settings.topics.ledger, until=lambda r: len(r) >= 2
    )
    [payroll] = [
        body
        for name, body in (avro.decode(r.value)[1]["event"] for r in records)
        if name.endswith("PurposeDefined")
    ]
    assert (payroll["consent_text"], payroll["consent_text_version"]) == ("", "")


def test_a_batch_that_meets_a_database_outage_is_retried_and_recorded_once(
    ledger: Ledger,
    client: LedgerClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = ingest_consumer(ledger, settings)
    consumer.consumer.subscribe([settings.topics.ingest])
    ids = send(client, b.define_purpose(), b.define_purpose("terms"))
    original = ledger.record
    outages = iter([True])

    def flaky(commands: Any) -> Any:
        if next(outages, False):
            raise OperationalError("connection refused")
        return original(commands)

    monkeypatch.setattr(ledger, "record", flaky)
    reports = []
    wait_until(
        lambda: bool(reports.append(consumer.poll_once()) or recorded(ledger, ids) == 2),
        what="recorded after the outage",
    )
    assert sum(r.recorded for r in reports if r) == 2
    consumer.consumer.close()
    consumer.producer.close()


def test_relay_resumes_after_a_restart_without_gaps(ledger: Ledger, settings: Settings) -> None:
    ledger.record([b.define_purpose()])
    ledger.record([b.grant(f"user-{i}@example.com") for i in range(20)])
    bootstrap = settings.require_kafka()
    first = make_producer(bootstrap)
    Relay(ledger, first, settings.topics.ledger, batch_size=7).publish_once()
    first.close()  # the process stops after one batch
    ledger.record([b.grant(f"late-{i}@example.com") for i in range(5)])
    second = make_producer(bootstrap)
    restarted = Relay(ledger, second, settings.topics.ledger, batch_size=7)
    while restarted.publish_once():
        pass
    second.close()

    total = len(ledger.store.select_notifications(1, 1000))
    records = read_topic(bootstrap, settings.topics.ledger, until=lambda r: len(r) >= total)
    sequences = sorted(avro.decode(r.value)[1]["sequence"] for r in records)
    assert sequences == list(range(1, total + 1))


def test_a_second_relay_stands_by_until_the_first_one_stops(settings: Settings) -> None:
    first, second = open_ledger(settings), open_ledger(settings)
    stop = threading.Event()
    assert first.store.acquire_lock("relay:ledger", stop)
    taken = threading.Event()
    standby = threading.Thread(
        target=lambda: second.store.acquire_lock("relay:ledger", stop, retry_s=0.1) and taken.set()
    )
    standby.start()
    assert not taken.wait(1.0), "two relays held the lock at once"
    first.close()  # the active relay stops (or its process dies): its session lock goes
    assert taken.wait(5.0)
    stop.set()
    standby.join()
    second.close()
