"""The ledger topic as the erasure journal: the ``KeysShredded`` records published since the
last reconciliation of this database.

The ledger topic (long retention, replicated) is the one copy of every erasure that lives
outside the database; a database restored from a backup lacks the erasures recorded after the
backup, but the topic still has them. Rules this reader keeps:

- **Offsets live in the database they describe.** Partitions are assigned directly (no
  consumer group, nothing committed to Kafka); the next offset to read of each partition is
  saved in the ledger's ``positions`` table as ``reconcile:<topic>:<partition>``. A restored
  database therefore carries the offsets of its backup and rereads exactly what happened
  since; a new database reads everything. The caller saves offsets only after what was read
  is applied (:meth:`ErasureJournal.save`), so every erasure before a saved offset is known to
  be in this database.
- **The end of a partition is the high watermark of fetch responses** — not ListOffsets,
  which the development broker (Tansu) answers wrongly. Apache Kafka answers it right
  (``tests/integration/test_apache_kafka.py``); the high watermark is right on both. Reading
  stops when every partition has reached its high watermark, so a run with nothing new costs
  one fetch round trip.
- **A saved offset beyond a partition's end** means the topic was recreated or truncated:
  that partition is read again from its beginning.
- **Nothing that might be an erasure is skipped.** Records are filtered by their
  ``event_type`` header without decoding; one that may be a ``KeysShredded`` and does not
  decode stops the run (:class:`JournalUnreadable`).
- ``max_sequence`` is the greatest ledger sequence read, so the caller can keep the ledger's
  sequence ahead of everything already published (see ``ledger.erasure.reconcile``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ledger.kafka.admin import topic_exists
from ledger.kafka.consumer import KafkaConsumer, TopicPartition, make_consumer
from ledger.storage.store import LedgerStore
from ledger.webhooks.notice import Erasure
from ledger.wire import avro

ERASURE = "KeysShredded"
POLL_MS = 50


class JournalUnreadable(RuntimeError):
    """The ledger topic could not be read to its end; the message says where and why."""


@dataclass
class JournalRead:
    """What one run read: erasures in topic order, and where each partition ends now."""

    topic_exists: bool = True
    records: int = 0
    max_sequence: int = 0
    erasures: list[Erasure] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)


def position_name(topic: str, partition: int) -> str:
    return f"reconcile:{topic}:{partition}"


class ErasureJournal:
    def __init__(
        self, bootstrap: str, topic: str, store: LedgerStore, *, timeout_s: float = 60.0
    ) -> None:
        """``timeout_s``: how long reading may go without receiving anything before it
        gives up (:class:`JournalUnreadable`)."""
        self.bootstrap = bootstrap
        self.topic = topic
        self.store = store
        self.timeout_s = timeout_s

    def read(self) -> JournalRead:
        """Everything published since the saved offsets, up to each partition's end."""
        if not topic_exists(self.bootstrap, self.topic, timeout_s=min(self.timeout_s, 10.0)):
            return JournalRead(topic_exists=False)
        consumer = make_consumer(
            self.bootstrap, group=None, fetch_max_wait_ms=POLL_MS, allow_auto_create_topics=False
        )
        try:
            partitions = self._assign(consumer)
            return self._read_to_end(consumer, partitions)
        finally:
            consumer.close()

    def save(self, read: JournalRead) -> None:
        """Records where the next run starts; call only once ``read`` is applied."""
        for partition, offset in read.offsets.items():
            self.store.set_position(position_name(self.topic, partition), offset)

    def _assign(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        deadline = time.monotonic() + self.timeout_s
        while not (found := consumer.partitions_for_topic(self.topic)):
            if time.monotonic() > deadline:
                raise JournalUnreadable(f"no partition metadata for topic {self.topic}")
            time.sleep(0.1)
        partitions = [TopicPartition(self.topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, self.store.get_position(position_name(self.topic, tp.partition)))
        return partitions

    def _read_to_end(
        self, consumer: KafkaConsumer, partitions: list[TopicPartition]
    ) -> JournalRead:
        read = JournalRead()
        deadline = time.monotonic() + self.timeout_s
        while not self._at_end(consumer, partitions):
            if time.monotonic() > deadline:
                raise JournalUnreadable(
                    f"reading topic {self.topic} made no progress for {self.timeout_s:.0f} s"
                )
            for batch in consumer.poll(timeout_ms=POLL_MS).values():
                deadline = time.monotonic() + self.timeout_s  # a long topic is no failure
                for record in batch:
                    self._take(record, read)
        read.offsets = {tp.partition: consumer.position(tp) for tp in partitions}
        return read

    @staticmethod
    def _at_end(consumer: KafkaConsumer, partitions: list[TopicPartition]) -> bool:
        at_end = True
        for tp in partitions:
            end, position = consumer.highwater(tp), consumer.position(tp)
            if end is None or position < end:
                at_end = False
            elif position > end:  # the topic was recreated or truncated since
                consumer.seek_to_beginning(tp)
                at_end = False
        return at_end

    def _take(self, record: Any, read: JournalRead) -> None:
        read.records += 1
        headers = dict(record.headers or [])
        event_type, sequence = headers.get("event_type"), headers.get("sequence")
        if event_type is not None and event_type != ERASURE.encode():
            if sequence is not None and sequence.isdigit():
                read.max_sequence = max(read.max_sequence, int(sequence))
            return
        try:
            _, decoded = avro.decode(record.value or b"")
        except (avro.UndecodableMessage, avro.UnknownSchema) as exc:
            where = f"partition {record.partition} offset {record.offset}"
            raise JournalUnreadable(f"{type(exc).__name__} at {where} of {self.topic}") from exc
        read.max_sequence = max(read.max_sequence, int(decoded["sequence"]))
        if decoded.get("event_type") == ERASURE:
            read.erasures.append(Erasure.from_record(decoded))
