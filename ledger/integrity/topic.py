"""The chain on the Kafka ledger topic: what the relay attaches, and reading a dump back.

Rules this module keeps:

- **A record carries its stored form.** Each ``compliance.LedgerRecord`` has a ``chain``
  (``compliance.ChainLink``): the link's ``previous`` and ``hash`` and the event's stored
  ``topic`` and ``state`` bytes, exactly as hashed. The stored state is the event's JSON with
  personal fields sealed, so it adds nothing readable that the Avro fields lack, and a dump
  verifies exactly, without the database. (Chaining a canonical form of the Avro record
  instead would tie the chain to the topic's schema and could not cover the stored form.)
- **The Avro fields must be derived from that stored form.** Verification rebuilds the record
  from the stored state and reports ``mismatch`` where they differ, so the readable fields are
  covered by the chain too.
- **Reading to the end** uses the high watermark of fetch responses (the development broker,
  Tansu, answers ListOffsets wrongly; Apache Kafka answers it right, but the high watermark is
  right on both, so it stays while Tansu is the development default), like
  ``ledger.erasure.journal``. Records are merged across
  partitions by ``sequence``; a record published twice (a relay crash) counts once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import Notification

from ledger.integrity.checkpoints import Checkpoint
from ledger.integrity.verify import Item, Problem
from ledger.kafka.consumer import KafkaConsumer, TopicPartition, make_consumer
from ledger.storage.chain import Link, stored
from ledger.wire import avro, contract

POLL_MS = 100


class TopicUnreadable(RuntimeError):
    """The topic could not be read to its end."""


def chain_link(notification: Notification, link: Link | None) -> dict[str, Any] | None:
    """The ``compliance.ChainLink`` of a notification, or None if it has no link."""
    if link is None:
        return None
    return {
        "previous": link.previous,
        "hash": link.hash,
        "topic": notification.topic,
        "state": notification.state,
    }


@dataclass
class TopicDump:
    records: int = 0
    duplicates: int = 0
    by_sequence: dict[int, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[Checkpoint] = field(default_factory=list)

    @property
    def items(self) -> Iterator[Item]:
        for sequence in sorted(self.by_sequence):
            yield item_of(self.by_sequence[sequence])


def item_of(record: dict[str, Any]) -> Item:
    seq, chain = int(record["sequence"]), record.get("chain")
    if chain is None:
        return Item(seq, None, None)
    event = stored(
        seq, record["aggregate_id"], record["aggregate_version"], chain["topic"], chain["state"]
    )
    return Item(seq, event, Link(seq, chain["previous"], bytes(chain["hash"])))


def mismatch(record: dict[str, Any], transcoder: Any) -> bool:
    """Whether the record's Avro fields are not what its stored form maps to."""
    chain = record["chain"]
    rebuilt = contract.ledger_record(
        sequence=record["sequence"],
        event_type=event_type(chain["topic"]),
        aggregate_id=record["aggregate_id"],
        aggregate_version=record["aggregate_version"],
        state=transcoder.decode(chain["state"]),
        chain=chain,
    )
    encoded = avro.encode("LedgerRecord", rebuilt)
    return avro.decode(encoded)[1] != record


def mismatches(dump: TopicDump) -> list[Problem]:
    """Records whose Avro fields are not derived from the stored form their link covers."""
    from ledger.application.service import LedgerReader  # the ledger's own transcoder, no database

    reader = LedgerReader({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    transcoder = reader.mapper.transcoder
    return [
        Problem(seq, "mismatch", "the record's Avro fields differ from its stored form")
        for seq, record in sorted(dump.by_sequence.items())
        if record.get("chain") is not None and mismatch(record, transcoder)
    ]


def event_type(topic: str) -> str:
    """The relay's name for a stored event topic (``...:Subject.Registered`` →
    ``SubjectRegistered``)."""
    owner, _, name = topic.split(":", 1)[1].rpartition(".")
    return owner + name if name == "Registered" else name


def read_topic(
    bootstrap: str, ledger_topic: str, checkpoints_topic: str | None, *, timeout_s: float = 30.0
) -> TopicDump:
    dump = TopicDump()
    for record in _read_all(bootstrap, ledger_topic, timeout_s):
        dump.records += 1
        seq = int(record["sequence"])
        if seq in dump.by_sequence:
            dump.duplicates += 1
            continue
        dump.by_sequence[seq] = record
    if checkpoints_topic:
        for body in _read_all(bootstrap, checkpoints_topic, timeout_s, missing_ok=True):
            dump.checkpoints.append(_checkpoint(body))
    return dump


def _checkpoint(body: dict[str, Any]) -> Checkpoint:
    root = body.get("root")
    return Checkpoint(
        body["sequence"],
        bytes(body["head"]),
        body["time_us"],
        body["key_id"],
        body["signature"],
        body.get("tree_size"),
        None if root is None else bytes(root),
        body.get("note"),
    )


def _read_all(
    bootstrap: str, topic: str, timeout_s: float, *, missing_ok: bool = False
) -> Iterator[dict[str, Any]]:
    consumer = make_consumer(
        bootstrap, group=None, fetch_max_wait_ms=POLL_MS, allow_auto_create_topics=False
    )
    try:
        partitions = _assign(consumer, topic, timeout_s, missing_ok)
        deadline = time.monotonic() + timeout_s
        while not _at_end(consumer, partitions):
            if time.monotonic() > deadline:
                raise TopicUnreadable(f"reading {topic} made no progress for {timeout_s:.0f} s")
            for batch in consumer.poll(timeout_ms=POLL_MS).values():
                deadline = time.monotonic() + timeout_s
                for message in batch:
                    yield avro.decode(message.value or b"")[1]
    finally:
        consumer.close()


def _assign(
    consumer: KafkaConsumer, topic: str, timeout_s: float, missing_ok: bool
) -> list[TopicPartition]:
    deadline = time.monotonic() + (min(timeout_s, 3.0) if missing_ok else timeout_s)
    while not (found := consumer.partitions_for_topic(topic)):
        if time.monotonic() > deadline:
            if missing_ok:
                return []
            raise TopicUnreadable(f"no partition metadata for topic {topic}")
        time.sleep(0.1)
    partitions = [TopicPartition(topic, p) for p in sorted(found)]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek_to_beginning(tp)
    return partitions


def _at_end(consumer: KafkaConsumer, partitions: list[TopicPartition]) -> bool:
    for tp in partitions:
        end = consumer.highwater(tp)
        if end is None or consumer.position(tp) < end:
            return False
    return True
