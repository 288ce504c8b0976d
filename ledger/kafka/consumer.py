"""Consuming from Kafka: the one place that builds a consumer.

Offsets are never committed automatically: a process commits only what it has durably
handled (see ``consumers.ingest``). ``max_poll_interval_ms`` is a few seconds so a consumer
group forms quickly and a stuck member is replaced quickly; a batch is processed well inside it.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

__all__ = ["KafkaConsumer", "OffsetAndMetadata", "TopicPartition", "make_consumer"]


def make_consumer(bootstrap: str, *, group: str | None, **overrides: Any) -> KafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": bootstrap.split(","),
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
