"""Consuming from Kafka: the one place that builds a consumer.

Offsets are never committed automatically: a process commits only what it has durably
handled (see ``consumers.ingest``). ``max_poll_interval_ms`` is a few seconds so a consumer
group forms quickly and a stuck member is replaced quickly; a batch is processed well inside it.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

from ledger.kafka.connection import KafkaSecurity, connection_config

__all__ = [
    "KafkaConsumer",
    "OffsetAndMetadata",
    "Polled",
    "TopicPartition",
    "commit_polled",
    "make_consumer",
    "rewind",
]


def make_consumer(
    bootstrap: str,
    *,
    group: str | None,
    security: KafkaSecurity | None = None,
    **overrides: Any,
) -> KafkaConsumer:
    """A consumer; ``security`` defaults to the ``LEDGER_KAFKA_*`` settings (``connection``)."""
    config: dict[str, Any] = {
        **connection_config(bootstrap, security),
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_interval_ms": 10_000,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 1_000,
        "fetch_max_wait_ms": 100,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "client_id": "compliance-ledger",
    }
    config.update(overrides)
    return KafkaConsumer(**config)


Polled = dict[TopicPartition, list[Any]]


def commit_polled(consumer: KafkaConsumer, polled: Polled) -> str | None:
    """Commits the offsets after every polled record. Returns the error's name if the commit
    failed — typically a rebalance: the new owner re-reads the records, and the caller's own
    idempotence (receipts, planned deliveries) makes that harmless."""
    offsets = {
        tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)
        for tp, records in polled.items()
        if records
    }
    try:
        consumer.commit(offsets)
    except KafkaError as exc:
        return type(exc).__name__
    return None


def rewind(consumer: KafkaConsumer, polled: Polled) -> None:
    """Seeks back to the first polled record of each partition, to read the batch again."""
    for tp, records in polled.items():
        if records:
            consumer.seek(tp, records[0].offset)
