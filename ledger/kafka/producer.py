"""Producing to Kafka: the one place that builds a producer.

Producers are idempotent with ``acks=all``: a send is acknowledged only when every in-sync
replica has it, and broker-side retries neither duplicate nor reorder records of a partition.
Callers that must not lose a record call :meth:`KafkaProducer.flush` and treat an exception
from it (or from a send future) as "not published".
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer

from ledger.kafka.connection import KafkaSecurity, connection_config

Headers = list[tuple[str, bytes]]


def make_producer(
    bootstrap: str, *, security: KafkaSecurity | None = None, **overrides: Any
) -> KafkaProducer:
    """A producer; ``security`` defaults to the ``LEDGER_KAFKA_*`` settings (``connection``)."""
    config: dict[str, Any] = {
        **connection_config(bootstrap, security),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "compression_type": None,
        "client_id": "compliance-ledger",
    }
    config.update(overrides)
    return KafkaProducer(**config)
