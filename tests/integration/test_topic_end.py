"""The way docs/contract.md tells consumers to read a partition to its end works on every
broker the project runs on: the high watermark of fetch responses, not ListOffsets (which the
development broker answers with the first offset of the last batch plus one)."""

from __future__ import annotations

import time
import uuid

from ledger.kafka.admin import ensure_topics
from ledger.kafka.consumer import TopicPartition, make_consumer
from ledger.kafka.producer import make_producer

BATCHES = (10, 7)


def test_reading_to_the_fetch_high_watermark_reads_every_record(kafka_bootstrap: str) -> None:
    topic = f"t{uuid.uuid4().hex[:12]}.end"
    ensure_topics(kafka_bootstrap, {topic: 1})
    producer = make_producer(kafka_bootstrap, linger_ms=50)
    for size in BATCHES:  # two record batches: the last one has more than one record
        for i in range(size):
            producer.send(topic, f"{size}-{i}".encode())
        producer.flush()
    producer.close()

    tp = TopicPartition(topic, 0)
    consumer = make_consumer(kafka_bootstrap, group=None)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    read: list[bytes] = []
    deadline = time.monotonic() + 30
    while (end := consumer.highwater(tp)) is None or consumer.position(tp) < end:
        assert time.monotonic() < deadline, f"read {len(read)} records, high watermark {end}"
        for batch in consumer.poll(timeout_ms=100).values():
            read += [record.value for record in batch]
    consumer.close()
    assert len(read) == sum(BATCHES) == end
