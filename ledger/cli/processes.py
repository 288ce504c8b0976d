"""``ledger ingest`` and ``ledger relay``: the long-running processes, one per command."""

from __future__ import annotations

import typer
from kafka.errors import KafkaError

from consumers.ingest import IngestConsumer
from consumers.relay import Relay
from ledger.application.service import Ledger
from ledger.cli import common
from ledger.cli.common import fail, kafka_refused, settings, stop_on_signals
from ledger.cli.keys import before_serving
from ledger.integrity import witnesses
from ledger.integrity.checkpointer import Checkpointer, table_opener
from ledger.integrity.checkpoints import CheckpointSigner
from ledger.integrity.witnesses import Witnessing
from ledger.kafka.admin import (
    BrokerUnavailable,
    default_partitions,
    ensure_topics,
    ingest_topic_configs,
)
from ledger.kafka.consumer import make_consumer
from ledger.kafka.producer import KafkaProducer, make_producer
from ledger.process.settings import ConfigError, Settings


def ingest() -> None:
    """Record events from the ingest topic (Kafka → ledger). Stops cleanly on Ctrl-C."""
    s = settings()
    stop = stop_on_signals(s.shutdown_grace)
    common.wait_until_kafka_admits(s, stop)
    try:
        bootstrap = s.require_kafka()
        partitions = default_partitions(s.topics)
        ensure_topics(
            bootstrap,
            {t: partitions[t] for t in (s.topics.ingest, s.topics.rejected)},
            configs=ingest_topic_configs(s.topics, s.ingest_retention),
            replication=s.kafka_replication,
        )
    except (ConfigError, BrokerUnavailable) as exc:
        fail(str(exc))
    except KafkaError as exc:
        fail(kafka_refused(bootstrap, exc))
    before_serving(s)  # a restored database learns its missing erasures before recording
    ledger = common.ledger(s)
    consumer = make_consumer(
        bootstrap, group=s.ingest_group, fetch_max_wait_ms=s.kafka_fetch_wait_ms
    )
    producer = make_producer(bootstrap)
    try:
        IngestConsumer(
            ledger,
            consumer,
            producer,
            s.topics,
            batch_size=s.ingest_batch_size,
            max_message_bytes=s.ingest_max_message_bytes,
        ).run(stop)
    finally:
        consumer.close()
        producer.close()
        ledger.close()


def relay() -> None:
    """Publish recorded events on the ledger topic (ledger → Kafka). Stops cleanly on Ctrl-C."""
    s = settings()
    stop = stop_on_signals(s.shutdown_grace)
    common.wait_until_kafka_admits(s, stop)
    try:
        bootstrap = s.require_kafka()
        created = ensure_topics(
            bootstrap,
            {s.topics.ledger: default_partitions(s.topics)[s.topics.ledger]},
            replication=s.kafka_replication,
        )
        if s.checkpoint_key is not None:
            ensure_topics(bootstrap, {s.topics.checkpoints: 1}, replication=s.kafka_replication)
    except (ConfigError, BrokerUnavailable) as exc:
        fail(str(exc))
    except KafkaError as exc:
        fail(kafka_refused(bootstrap, exc))
    ledger = common.ledger(s)
    producer = make_producer(bootstrap)
    try:
        Relay(
            ledger,
            producer,
            s.topics.ledger,
            batch_size=s.relay_batch_size,
            checkpointer=checkpointer(s, ledger, producer),
        ).run(stop, topic_created=bool(created))
    finally:
        producer.close()
        ledger.close()


def checkpointer(s: Settings, ledger: Ledger, producer: KafkaProducer) -> Checkpointer | None:
    """Signed checkpoints after publishing, if a checkpoint key is configured."""
    if s.checkpoint_key is None:
        return None
    topic = s.topics.checkpoints

    def publish(value: bytes) -> None:
        producer.send(topic, value=value).get(timeout=30)

    return Checkpointer(
        ledger.store,
        table_opener(s.require_database(), s.database_schema),
        CheckpointSigner(s.checkpoint_key, s.log_origin),
        publish,
        every=s.checkpoint_every,
        interval=s.checkpoint_interval,
        witnessing=Witnessing(witnesses.parse(s.witnesses)) if s.witnesses else None,
    )


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(relay)
