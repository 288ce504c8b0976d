"""An optional producer on librdkafka (``confluent-kafka``), for ``ledger.client``.

kafka-python, which every ledger process uses, encodes records and completes their futures in
Python, on a second thread that competes with the caller for the GIL: a producer that seals
and sends more than about 15,000 events/s from one process spends most of its time there
(``docs/measured.md``). librdkafka does that work in C, on its own threads.
``LedgerClient(..., kafka_client="librdkafka")`` uses this class instead; install it with
``pip install 'compliance-ledger[librdkafka]'``.

It keeps the producer's contract (``ledger.kafka.producer``): idempotent, ``acks=all``, the
same ``LEDGER_KAFKA_*`` security settings, and :meth:`flush` raises if any record was not
delivered. Partitioning is librdkafka's ``murmur2_random``, the Java client's (and
kafka-python's) murmur2 for keyed records, so a subject's events land in the same partition
whichever client sent them.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from kafka.errors import KafkaError, KafkaTimeoutError

from ledger.kafka.connection import KafkaSecurity
from ledger.kafka.security import from_environment

INSTALL_HINT = "pip install 'compliance-ledger[librdkafka]'"
POLL_EVERY = 256


def librdkafka_config(bootstrap: str, security: KafkaSecurity) -> dict[str, Any]:
    """librdkafka settings equivalent to ``connection_config`` and ``make_producer``'s."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": "compliance-ledger",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "partitioner": "murmur2_random",
        # Failures are all flush() needs to hear of: no Python callback per delivered record.
        "delivery.report.only.error": True,
        **security.librdkafka_config(),
    }


class _Sent:
    """What :meth:`LibrdkafkaProducer.send` returns: delivery is checked by ``flush``."""

    __slots__ = ()

    def get(self, timeout: float | None = None) -> None:
        return None


_SENT = _Sent()


class LibrdkafkaProducer:
    """The subset of kafka-python's ``KafkaProducer`` that ``LedgerClient`` uses."""

    def __init__(
        self, bootstrap: str, *, security: KafkaSecurity | None = None, **overrides: Any
    ) -> None:
        try:
            from confluent_kafka import Producer
        except ImportError:
            raise RuntimeError(
                f"kafka_client='librdkafka' needs confluent-kafka: {INSTALL_HINT}"
            ) from None
        chosen = security if security is not None else from_environment(os.environ)
        self._producer = Producer({**librdkafka_config(bootstrap, chosen), **overrides})
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._unpolled = 0

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None) -> _Sent:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let librdkafka send some first
                self._producer.poll(0.05)
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:  # serves the (error) delivery reports already in
            self._unpolled = 0
            self._producer.poll(0)
        return _SENT

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            with self._lock:
                self._errors.append(str(error))

    def flush(self, timeout: float | None = None) -> None:
        """Waits until every record is delivered; raises KafkaError if any failed."""
        left = self._producer.flush(-1 if timeout is None else timeout)
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise KafkaError(f"{len(errors)} records not delivered; first: {errors[0]}")
        if left:
            raise KafkaTimeoutError(f"{left} records not delivered within {timeout} s")

    def close(self) -> None:
        self._producer.flush(10)
