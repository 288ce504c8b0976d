"""Sealed ingest with a real broker and PostgreSQL: producers seal, the ledger opens, keys
rotate and are destroyed, plaintext is refused unless the tenant allows it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import typer
from kafka.errors import KafkaError
from typer.testing import CliRunner

from consumers.ingest import IngestConsumer
from ledger.application.service import Ledger
from ledger.cli import admin, ingest_keys
from ledger.client import LedgerClient, message_key
from ledger.domain.values import LegalBasis
from ledger.kafka.consumer import make_consumer
from ledger.kafka.producer import make_producer
from ledger.keys.crypto_ingest import IngestPublicKey
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings
from ledger.wire import avro
from tests import builders as b
from tests.kafka_helpers import read_topic, wait_until
from tests.sealing import sealed_message_v1, sealed_record

EVIDENCE, DESCRIPTION, NOTE = (
    "signed by Alice Example",
    "Alice's CV, 2 pages",
    "to alice@home.example",
)
PERSONAL = [b.REF, b.IP, b.USER_AGENT, EVIDENCE, DESCRIPTION, NOTE]


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    app = open_ledger(settings)
    app.register_tenant(b.TENANT, "Acme")  # refuses personal fields in clear (the default)
    app.register_tenant("legacy", "Legacy", allow_plaintext_ingest=True)
    app.record([b.define_purpose(), b.define_purpose(tenant="legacy")])
    yield app
    app.close()


@pytest.fixture
def ingest(ledger: Ledger, settings: Settings) -> Iterator[IngestConsumer]:
    """``ledger ingest`` in a thread, with its own ledger instance, as its own process has."""
    bootstrap = settings.require_kafka()
    consumer_ledger = open_ledger(settings)
    consumer = IngestConsumer(
        consumer_ledger,
        make_consumer(bootstrap, group=settings.ingest_group),
        make_producer(bootstrap),
        settings.topics,
    )
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    yield consumer
    stop.set()
    thread.join(timeout=10)
    consumer.consumer.close()
    consumer.producer.close()
    consumer_ledger.close()


def client(settings: Settings, key: IngestPublicKey | None) -> LedgerClient:
    return LedgerClient(
        settings.require_kafka(), producer="crm", topic=settings.topics.ingest, ingest_key=key
    )


def send(settings: Settings, key: IngestPublicKey | None, *commands: Any) -> list[str]:
    with client(settings, key) as producer:
        return [producer.send_command(c) for c in commands]


def recorded(ledger: Ledger, event_ids: list[str], tenant: str = b.TENANT) -> bool:
    return len(ledger.store.recorded_receipts([(tenant, e) for e in event_ids])) == len(event_ids)


def rejections(settings: Settings, count: int) -> dict[str, str]:
    """reason by event id, for the first ``count`` rejections."""
    records = read_topic(
        settings.require_kafka(), settings.topics.rejected, until=lambda r: len(r) >= count
    )
    out = {}
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}
        assert not any(value in headers["detail"] for value in PERSONAL), headers
        out[_event_id(record.value)] = headers["reason"]
    return out


def _event_id(value: bytes) -> str:
    return str(avro.decode(value)[1]["envelope"]["event_id"])


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, settings_environ: dict[str, str]) -> Callable[..., Any]:
    """``ledger tenants ...`` and ``ledger ingest-keys ...`` as an operator runs them."""
    for name, value in settings_environ.items():
        monkeypatch.setenv(name, value)
    app = typer.Typer()
    admin.register(app)
    ingest_keys.register(app)
    runner = CliRunner()

    def invoke(*args: str, **env: str) -> Any:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result

    return invoke


def test_sealed_events_are_recorded_and_no_personal_value_is_on_the_ingest_topic(
    ledger: Ledger, ingest: IngestConsumer, settings: Settings
) -> None:
    key = ledger.ingest_keys.public_key_for(b.TENANT)
    ids = send(
        settings,
        key,
        b.grant(b.REF, evidence=EVIDENCE),
        b.collect(b.REF, description=DESCRIPTION),
        b.disclose(b.REF, note=NOTE),
    )
    wait_until(lambda: recorded(ledger, ids), what="sealed events recorded")

    subject = ledger.find_subject(b.TENANT, b.REF)
    assert subject is not None
    granted, collected, disclosed = ledger.subject_events(subject.id)[1:]
    opened = {
        ledger.keys.open(subject.id, "ip_address", granted.ip_address),
        ledger.keys.open(subject.id, "user_agent", granted.user_agent),
        ledger.keys.open(subject.id, "evidence", granted.evidence),
        ledger.keys.open(subject.id, "description", collected.description),
        ledger.keys.open(subject.id, "note", disclosed.note),
    }
    assert opened == {b.IP, b.USER_AGENT, EVIDENCE, DESCRIPTION, NOTE}
    dump = read_topic(settings.require_kafka(), settings.topics.ingest, until=lambda r: len(r) >= 3)
    assert len(dump) == 3
    for message in dump:
        for value in PERSONAL:
            assert value.encode() not in message.value
            assert value.encode() not in message.key


def test_plaintext_is_refused_unless_the_tenant_allows_it(
    ledger: Ledger, ingest: IngestConsumer, settings: Settings
) -> None:
    refused, accepted = send(
        settings, None, b.grant(b.REF), b.grant(b.REF, tenant="legacy", evidence=EVIDENCE)
    )
    wait_until(lambda: recorded(ledger, [accepted], "legacy"), what="plaintext for legacy")
    assert rejections(settings, 1) == {refused: "plaintext_personal_data"}
    assert not recorded(ledger, [refused])
    assert ledger.find_subject(b.TENANT, b.REF) is None


def test_a_retired_key_still_opens_and_a_destroyed_one_is_refused(
    ledger: Ledger, ingest: IngestConsumer, settings: Settings, cli: Callable[..., Any]
) -> None:
    old = ledger.ingest_keys.public_key_for(b.TENANT)
    before = send(settings, old, b.grant(b.REF))
    wait_until(lambda: recorded(ledger, before), what="sealed to the first key")

    rotated = cli("ingest-keys", "rotate").stdout
    assert f"retired: {old.key_id}" in rotated
    after_rotation = send(settings, old, b.collect(b.REF, description=DESCRIPTION))
    wait_until(lambda: recorded(ledger, after_rotation), what="sealed to the retired key")

    time.sleep(1.1)  # the smallest retention there is: a second
    destroyed = cli("ingest-keys", "destroy-expired", LEDGER_INGEST_RETENTION="1s")
    assert destroyed.stdout.strip() == f"destroyed: {old.key_id}"
    listed = cli("ingest-keys", "list").stdout
    assert f"{old.key_id}\tdestroyed" in listed
    ingest.ledger.ingest_keys.refresh_s = 0.0  # see the destruction now, not within a minute
    [too_late] = send(settings, old, b.withdraw(b.REF))
    new = ledger.ingest_keys.public_key_for(b.TENANT)
    fresh = send(settings, new, b.disclose(b.REF))
    wait_until(lambda: recorded(ledger, fresh), what="sealed to the new key")
    assert rejections(settings, 1) == {too_late: "ingest_key_destroyed"}


def test_an_unknown_key_id_is_refused(
    ledger: Ledger, ingest: IngestConsumer, settings: Settings
) -> None:
    cmd = b.grant(b.REF)
    record = sealed_record(cmd, ledger.ingest_keys.public_key_for(b.TENANT))
    record["envelope"]["seal_session"]["key_id"] = "ik-20990101-00000000"
    with client(settings, None) as producer:
        producer.send_raw(avro.encode(cmd.kind, record), key=message_key(b.TENANT, b.REF))
    assert rejections(settings, 1) == {cmd.envelope.event_id: "ingest_key_unknown"}


def test_the_plaintext_policy_is_set_and_shown_by_the_operator(
    ledger: Ledger, cli: Callable[..., Any]
) -> None:
    added = cli("tenants", "add", "initech", "--allow-plaintext-ingest").stdout
    assert "sealed or in clear" in added
    assert "sealed only" in cli("tenants", "plaintext-ingest", "initech", "--refuse").stdout
    assert "(unchanged)" in cli("tenants", "plaintext-ingest", "initech", "--refuse").stdout
    listed = {line.split("\t")[0]: line for line in cli("tenants", "list").stdout.splitlines()}
    assert "\tsealed only\t" in listed["initech"]
    assert "\tsealed or in clear\t" in listed["legacy"]
    assert "\tsealed only\t" in listed[b.TENANT]
    topics = [n.topic for n in ledger.store.select_notifications(1, 100)]
    assert sum(t.endswith("Tenant.IngestPolicySet") for t in topics) == 3


def test_the_operator_prints_what_producers_need(ledger: Ledger, cli: Callable[..., Any]) -> None:
    shown = json.loads(cli("ingest-keys", "show", "--tenant", b.TENANT).stdout)
    assert IngestPublicKey.from_json(shown) == ledger.ingest_keys.public_key_for(b.TENANT)
    assert "private" not in json.dumps(shown)


def test_v1_messages_of_an_older_client_are_still_recorded_beside_v2_ones(
    ledger: Ledger, ingest: IngestConsumer, settings: Settings
) -> None:
    key = ledger.ingest_keys.public_key_for(b.TENANT)
    older = b.grant(b.REF, evidence=EVIDENCE)
    with client(settings, None) as producer:  # raw bytes, as a v1 client wrote them
        producer.send_raw(
            sealed_message_v1(older, key), key=message_key(b.TENANT, b.REF, key.routing_key)
        )
    newer = send(settings, key, b.collect(b.REF, description=DESCRIPTION))
    wait_until(lambda: recorded(ledger, [older.envelope.event_id, *newer]), timeout=30)
    subject = ledger.find_subject(b.TENANT, b.REF)
    assert subject is not None
    granted, collected = ledger.subject_events(subject.id)[1:3]
    assert ledger.keys.open(subject.id, "evidence", granted.evidence) == EVIDENCE
    assert ledger.keys.open(subject.id, "description", collected.description) == DESCRIPTION


def test_the_librdkafka_producer_is_recorded_like_kafka_python_and_partitions_alike(
    ledger: Ledger, ingest: IngestConsumer, settings: Settings
) -> None:
    key = ledger.ingest_keys.public_key_for(b.TENANT)
    refs = [f"subject-{i}@example.com" for i in range(12)]
    with LedgerClient(
        settings.require_kafka(),
        producer="crm",
        topic=settings.topics.ingest,
        ingest_key=key,
        kafka_client="librdkafka",
    ) as fast:
        via_librdkafka = [fast.send_command(b.grant(ref, evidence=EVIDENCE)) for ref in refs]
    via_kafka_python = send(settings, key, *[b.collect(ref) for ref in refs])
    wait_until(lambda: recorded(ledger, [*via_librdkafka, *via_kafka_python]), timeout=30)
    subject = ledger.find_subject(b.TENANT, refs[0])
    assert subject is not None
    granted = ledger.subject_events(subject.id)[1]
    assert ledger.keys.open(subject.id, "evidence", granted.evidence) == EVIDENCE
    # One subject's events share a partition whichever client sent them (Java's murmur2).
    records = read_topic(
        settings.require_kafka(), settings.topics.ingest, until=lambda r: len(r) >= 24
    )
    partitions: dict[bytes, set[int]] = {}
    for record in records:
        partitions.setdefault(record.key, set()).add(record.partition)
    assert len(partitions) == 12 and all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1  # keys do spread


def test_the_librdkafka_producer_reports_undelivered_records() -> None:
    with (
        pytest.raises(KafkaError),
        LedgerClient(
            "127.0.0.1:1",  # nothing listens
            producer="crm",
            kafka_client="librdkafka",
            librdkafka_config={"message.timeout.ms": 1000},
        ) as unreachable,
    ):
        unreachable.send_raw(b"\xc3\x01", key=b"acme")


def test_restriction_and_objection_travel_sealed_and_refusals_carry_their_reason(
    ledger: Ledger, ingest: IngestConsumer, settings: Settings
) -> None:
    """Art. 18 and 21 through Kafka with the producer client's own methods: recorded with
    their personal fields opened under the subject's key; refused ones on the rejected topic
    with the rule's reason and no personal value."""
    ledger.record(
        [b.define_purpose("analytics", "", text="", basis=LegalBasis.LEGITIMATE_INTERESTS)]
    )
    key = ledger.ingest_keys.public_key_for(b.TENANT)
    [granted] = send(settings, key, b.grant(b.REF))
    wait_until(lambda: recorded(ledger, [granted]), what="the subject's first event")
    subject = {"tenant": b.TENANT, "subject_ref": b.REF}
    with client(settings, key) as producer:
        ids = [
            producer.restrict_processing(
                **subject,
                restriction_reference="case-5",
                grounds="UNLAWFUL_PROCESSING",
                purposes=["newsletter"],
                source="email",
                note=NOTE,
            ),
            producer.raise_objection(**subject, purpose="analytics", source="web", reason=NOTE),
            producer.record_compelling_grounds(
                **subject, purpose="analytics", grounds_reference="lia-9", reasoning=EVIDENCE
            ),
            producer.lift_restriction(**subject, restriction_reference="case-5", source="email"),
        ]
        refused = [
            producer.lift_restriction(**subject, restriction_reference="case-5", source="email"),
            producer.raise_objection(**subject, purpose="newsletter", source="web"),
        ]
    wait_until(lambda: recorded(ledger, ids), what="the rights events recorded")
    found = ledger.find_subject(b.TENANT, b.REF)
    assert found is not None
    events = {type(e).__name__: e for e in ledger.subject_events(found.id)}
    restricted = events["ProcessingRestricted"]
    objected, answered = events["ObjectionRaised"], events["CompellingGroundsRecorded"]
    assert restricted.purposes == ["newsletter"] and restricted.grounds == "UNLAWFUL_PROCESSING"
    assert ledger.keys.open(found.id, "note", restricted.note) == NOTE
    assert ledger.keys.open(found.id, "reason", objected.reason) == NOTE
    assert ledger.keys.open(found.id, "reasoning", answered.reasoning) == EVIDENCE
    assert rejections(settings, 2) == {
        refused[0]: "restriction_unknown",
        refused[1]: "objection_not_applicable",
    }
