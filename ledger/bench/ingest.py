"""``ledger bench ingest``: throughput of Kafka → ingest → ledger, with its baselines.

Three figures from one run, each on a fresh schema of the same PostgreSQL:

1. **one save per event** — ``Ledger.record([event])``: one `eventsourcing` save (one
   transaction) per event, the naive design;
2. **batched save** — ``Ledger.record(batch)``: the ledger's own batched save, no Kafka;
3. **the producer** — ``LedgerClient`` seals every personal field (sealed ingest v2, a
   session to the ledger's ingest key, as real producers do) and produces the events to a
   fresh ingest topic, until the broker has acknowledged them all;
4. **end to end** — then ``IngestConsumer.run`` — the loop ``ledger ingest`` runs —
   consumes, decodes, opens the sealed fields, validates, records and commits them. Timed
   from the first fetched batch (the consumer group join is reported separately) until the
   last batch is committed.

The workload is realistic rather than flattering: every subject is new (a data key is made
and wrapped, the reference sealed and looked up) and gets a consent grant, a collection, a
disclosure under consent and a withdrawal, with IP address, user agent and free text sealed.
"""

from __future__ import annotations

import importlib.util
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime

from consumers.ingest import BatchReport, IngestConsumer
from ledger.bench.setup import TENANT, fresh_schema, ingest_key
from ledger.client import LedgerClient
from ledger.domain.values import LegalBasis
from ledger.kafka.admin import default_partitions, ensure_topics
from ledger.kafka.consumer import make_consumer
from ledger.kafka.producer import make_producer
from ledger.kafka.topics import Topics
from ledger.keys.crypto_ingest import SESSION_X25519, IngestPublicKey
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings
from ledger.wire.contract import Command, Envelope, new_event_id


def workload(subjects: int, run: str) -> list[Command]:
    """Four events per new subject; purposes are defined separately (see ``catalogue``)."""
    now = datetime.now(UTC)
    out: list[Command] = []
    for i in range(subjects):
        ref = f"{run}-subject-{i}@example.com"

        def env(ref: str = ref) -> Envelope:
            return Envelope(new_event_id(), TENANT, ref, now, "bench")

        sealed_web = {"ip_address": "198.51.100.23", "user_agent": "Mozilla/5.0 bench"}
        out += [
            Command(
                "ConsentGranted",
                env(),
                {"purpose": "newsletter", "consent_text_version": "1", "source": "signup-form"},
                {**sealed_web, "evidence": None},
            ),
            Command(
                "PersonalDataCollected",
                env(),
                {
                    "purpose": "newsletter",
                    "categories": ["contact.email"],
                    "source": "data-subject",
                },
                {"description": "newsletter sign-up form"},
            ),
            Command(
                "DataDisclosed",
                env(),
                {
                    "recipient": "Mailer Co",
                    "purpose": "newsletter",
                    "categories": ["contact.email"],
                    "legal_basis": LegalBasis.CONSENT,
                    "reference": "DPA-1",
                },
                {"note": None},
            ),
            Command(
                "ConsentWithdrawn",
                env(),
                {"purpose": "newsletter", "source": "app"},
                {"evidence": None},
            ),
        ]
    return out


def _rate(events: int, seconds: float) -> str:
    return f"{events / seconds:>8,.0f} events/s  ({events:,} events in {seconds:.2f} s)"


def one_save_per_event(base: Settings, commands: Sequence[Command]) -> float:
    with fresh_schema(base) as s, closing(open_ledger(s)) as ledger:
        started = time.perf_counter()
        for command in commands:
            ledger.record([command])
        return len(commands) / (time.perf_counter() - started)


def batched(base: Settings, commands: Sequence[Command], batch: int) -> float:
    with fresh_schema(base) as s, closing(open_ledger(s)) as ledger:
        started = time.perf_counter()
        for i in range(0, len(commands), batch):
            outcomes = ledger.record(commands[i : i + batch])
            assert all(o.status == "recorded" for o in outcomes)
        return len(commands) / (time.perf_counter() - started)


def produce(
    bootstrap: str,
    topic: str,
    key: IngestPublicKey,
    commands: Sequence[Command],
    session_scheme: str | None,
    kafka_client: str = "kafka-python",
) -> tuple[float, str, float]:
    """``LedgerClient`` sealing and producing ``commands`` until the broker has them all:
    (events/s, the session scheme, bytes a message)."""
    client = LedgerClient(
        bootstrap,
        producer="bench",
        topic=topic,
        ingest_key=key,
        session_scheme=session_scheme,
        kafka_client=kafka_client,
    )
    started = time.perf_counter()
    with client:
        for command in commands:
            client.send_command(command)
    rate = len(commands) / (time.perf_counter() - started)
    scheme = client.session_scheme(key.tenant) or "in clear"
    return rate, scheme, client.bytes_sent / max(1, client.messages_sent)


def producer_variants(base: Settings, commands: Sequence[Command]) -> None:
    """The producer again, to topics no one reads: through librdkafka (if installed), and
    with X25519 sessions instead of the hybrid KEM — what each choice costs or buys the
    producer, measured in the same run."""
    bootstrap = base.require_kafka()
    variants: list[tuple[str, str | None]] = [("kafka-python", SESSION_X25519)]
    if importlib.util.find_spec("confluent_kafka") is not None:
        variants.insert(0, ("librdkafka", None))
    for kafka_client, scheme in variants:
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        topics = Topics(f"{prefix}.ingest", f"{prefix}.rejected", f"{prefix}.ledger")
        ensure_topics(bootstrap, default_partitions(topics))
        with fresh_schema(base) as s:
            key = ingest_key(s)
            rate, used, size = produce(
                bootstrap, topics.ingest, key, commands, scheme, kafka_client
            )
        print(
            f"producer: seal + produce {rate:>8,.0f} events/s  ({used}, {kafka_client}, "
            f"{size:,.0f} bytes a message on average)"
        )


def end_to_end(
    base: Settings, commands: Sequence[Command], batch: int, session_scheme: str | None = None
) -> tuple[float, float]:
    """(producer rate, end-to-end rate), events/s."""
    bootstrap = base.require_kafka()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topics = Topics(f"{prefix}.ingest", f"{prefix}.rejected", f"{prefix}.ledger")
    ensure_topics(bootstrap, default_partitions(topics))
    with fresh_schema(base) as s, closing(open_ledger(s)) as ledger:
        key = ingest_key(s)  # producers seal every personal field, as in production
        produced, scheme, size = produce(bootstrap, topics.ingest, key, commands, session_scheme)
        print(
            f"producer: seal + produce {produced:>8,.0f} events/s  "
            f"({scheme}, kafka-python, {size:,.0f} bytes a message on average)"
        )
        consumer = IngestConsumer(
            ledger,
            make_consumer(bootstrap, group=f"{prefix}-ingest"),
            make_producer(bootstrap),
            topics,
            batch_size=batch,
        )
        stop = threading.Event()
        done: list[float] = []  # per report: when its batch was first read
        handled = 0

        def on_report(report: BatchReport) -> None:
            nonlocal handled
            assert report.rejected == 0, "benchmark events must all be valid"
            done.append(time.perf_counter() - report.seconds)
            handled += report.messages
            if handled >= len(commands):
                stop.set()

        subscribed = time.perf_counter()
        consumer.run(stop, on_report)  # the loop `ledger ingest` runs
        finished = time.perf_counter()
        first = min(done)
        print(f"  (consumer group join and first fetch took {first - subscribed:.2f} s)")
        elapsed = finished - first
        consumer.consumer.close()
        consumer.producer.close()
    return produced, len(commands) / elapsed


def run(
    s: Settings, *, events: int, single: int, batch: int, session_scheme: str | None = None
) -> None:
    tag = uuid.uuid4().hex[:6]
    per_event = one_save_per_event(s, workload(max(1, single // 4), tag + "a"))
    print(f"one save per event      {per_event:>8,.0f} events/s")
    commands = workload(max(1, events // 4), tag + "b")
    base_rate = batched(s, commands, batch)
    print(f"batched save, no Kafka  {base_rate:>8,.0f} events/s  (batch {batch})")
    e2e_commands = workload(max(1, events // 4), tag + "c")
    _, e2e = end_to_end(s, e2e_commands, batch, session_scheme)
    print(f"Kafka → ingest → ledger {e2e:>8,.0f} events/s  ({len(commands):,} events)")
    print(
        f"end to end / batched save = {e2e / base_rate:.2f}; "
        f"batched / one save per event = {base_rate / per_event:.1f}x"
    )
    if session_scheme is None:
        producer_variants(s, workload(max(1, events // 4), tag + "d"))
