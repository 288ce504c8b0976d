"""The relay: the ledger's notification log → Kafka ``compliance.ledger``.

Rules this process keeps:

- **Ledger order, no gaps.** Events are read in notification order from the last published
  position and sent by one idempotent producer, keyed by aggregate id (the subject id, or the
  tenant id for catalogue events), so one subject's events stay ordered in one partition.
- **The position moves only after the broker has acknowledged.** The relay saves its position
  after every record of a batch is acknowledged (``acks=all``). A crash before that re-sends
  the batch: duplicates are possible, gaps are not. Each record carries its ``sequence``
  (the notification id); consumers drop any sequence they have already seen.
- **Ciphertext only.** Records are built from the stored event state, whose personal fields
  are sealed under the subject's key; the relay holds no key and decrypts nothing.
- **One active relay per topic.** A relay publishes only while it holds a database lock named
  after the topic; a second relay started beside it waits as a standby and takes over when the
  first one stops or dies. The lock is checked before every batch: a database restart ends
  the session that held it, and the relay that finds it lost stands by again.
- **Each record carries its chain link** and the stored form it covers
  (``ledger.integrity.topic``), so a dump of the topic verifies without the database.
- **The Merkle log follows publication.** After each acknowledged batch the relay integrates
  its events into the Merkle log (``LedgerStore.grow_tree``), so proofs of published events
  need no integration of their own.
- **Checkpoints follow publication.** With a checkpoint key configured, the relay signs a
  checkpoint at its position every N events or T seconds (``ledger.integrity.checkpointer``),
  after the records it covers were acknowledged.
- **A new topic is filled from the start.** If the ledger topic had to be created (a fresh
  cluster, or the memory-only development broker after a restart), the relay republishes
  from the first event.
"""

from __future__ import annotations

import threading
from typing import Any

from eventsourcing.persistence import Notification

from ledger.application.service import Ledger
from ledger.integrity.checkpointer import Checkpointer
from ledger.integrity.topic import chain_link
from ledger.kafka.producer import KafkaProducer
from ledger.plumbing.backoff import Backoff
from ledger.plumbing.logs import get as get_logger
from ledger.storage.chain import Link
from ledger.wire import avro, contract


def event_type(topic: str) -> str:
    """``ledger.domain.subject:Subject.ConsentGranted`` → ``ConsentGranted``;
    ``...:Subject.Registered`` → ``SubjectRegistered``."""
    qualname = topic.split(":", 1)[1]
    owner, _, name = qualname.rpartition(".")
    return owner + name if name == "Registered" else name


class Relay:
    def __init__(
        self,
        ledger: Ledger,
        producer: KafkaProducer,
        topic: str,
        *,
        batch_size: int = 500,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.ledger = ledger
        self.checkpointer = checkpointer
        self.producer = producer
        self.topic = topic
        self.batch_size = batch_size
        self.position_name = f"relay:{topic}"
        self.log = get_logger("relay", topic=topic)

    def run(self, stop: threading.Event, *, topic_created: bool = False) -> None:
        self.log.info("relay_waiting_for_lock")
        if not self.ledger.store.acquire_lock(self.position_name, stop):
            return  # stopped while standing by
        if topic_created:
            self.restart_from_beginning()
        self.log.info("relay_started", position=self.position())
        backoff = Backoff()
        while not stop.is_set():
            try:
                if not self._still_active(stop):
                    break  # stopped while standing by
                published = self.publish_once()
                if not published and self.checkpointer is not None:
                    self.checkpointer.idle()
                if not published:  # inside the try: a listener lost to a restart is retried
                    self.ledger.store.wait_for_events(1.0)
                backoff.succeeded()
            except Exception as exc:
                wait = backoff.failed()
                self.log.warning("relay_will_retry", error=type(exc).__name__, backoff_s=wait)
                stop.wait(wait)
                continue
        self.log.info("relay_stopped", position=self.position())

    def _still_active(self, stop: threading.Event) -> bool:
        """Checks the lock before each batch: a PostgreSQL restart ends the session that held
        it and a standby may have taken over; then this relay stands by again rather than
        publish beside it. False if stopped while standing by."""
        if self.ledger.store.holds_lock(self.position_name):
            return True
        self.log.warning("relay_lost_lock")
        if not self.ledger.store.acquire_lock(self.position_name, stop):
            return False
        self.log.info("relay_started", position=self.position())
        return True

    def position(self) -> int:
        return self.ledger.store.get_position(self.position_name)

    def restart_from_beginning(self) -> None:
        if self.position():
            self.log.warning("ledger_topic_created_republishing_from_start")
            self.ledger.store.set_position(self.position_name, 0)

    def publish_once(self) -> int:
        """Publishes the next batch; returns how many records were published."""
        start = self.position() + 1
        notifications = self.ledger.store.select_notifications(start, limit=self.batch_size)
        if not notifications:
            return 0
        last = notifications[-1].id
        links = {k.sequence: k for k in self.ledger.store.select_chain(start, len(notifications))}
        futures = [self._send(n, links.get(n.id)) for n in notifications]
        self.producer.flush()
        for future in futures:
            future.get(timeout=0)  # raises if the broker refused the record
        self.ledger.store.set_position(self.position_name, last)
        self.ledger.store.grow_tree(last)
        self.log.info("relay_published", records=len(notifications), position=last)
        if self.checkpointer is not None:
            self.checkpointer.published(last, len(notifications))
        return len(notifications)

    def _send(self, notification: Notification, link: Link | None) -> Any:
        if link is None:
            self.log.error("relay_event_unchained", sequence=notification.id)
        name = event_type(notification.topic)
        state = self.ledger.mapper.transcoder.decode(notification.state)
        record = contract.ledger_record(
            sequence=notification.id,
            event_type=name,
            aggregate_id=notification.originator_id,  # type: ignore[arg-type]
            aggregate_version=notification.originator_version,
            state=state,
            chain=chain_link(notification, link),
        )
        return self.producer.send(
            self.topic,
            key=str(notification.originator_id).encode(),
            value=avro.encode("LedgerRecord", record),
            headers=[
                ("sequence", str(notification.id).encode()),
                ("event_type", name.encode()),
            ],
        )
