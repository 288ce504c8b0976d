"""Reading topics in tests. Counts messages by consuming them: the development broker's
(Tansu's) "latest offset" answers are not reliable, so no test that may run on it trusts
``end_offsets``. Apache Kafka's are (``tests/integration/test_apache_kafka.py``), but the suite
runs on both brokers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ledger.kafka.consumer import TopicPartition, make_consumer


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[Any]], bool],
    timeout: float = 30.0,
) -> list[Any]:
    """All records of ``topic`` from the beginning, read until ``until(records)`` holds.

    Raises AssertionError with what was read if the condition does not hold in time.
    """
    consumer = make_consumer(bootstrap, group=None)
    records: list[Any] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"read {len(records)} records from {topic} before timeout")
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def wait_until(condition: Callable[[], bool], *, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.1)
