"""The notifier: Kafka ``compliance.ledger`` → erasure and change webhooks to recipients and
processors.

Rules this process keeps:

- **Own consumer group** (``LEDGER_NOTIFIER_GROUP``), so it reads the whole ledger topic
  whatever else consumes it, and scales like the ingest consumer: one process per partition
  at most, more processes split the partitions and the delivery work.
- **Only ``KeysShredded`` and ``ChangeNoticeDue`` matter** (an erasure; a rectification, a
  restriction or its lifting, GDPR art. 19). Other records are skipped by their
  ``event_type`` header, without decoding.
- **Offsets are committed last.** A polled batch's erasures are planned in the outbox (one
  PostgreSQL transaction, ``ledger.webhooks.outbox``); the partition offsets are committed
  only after that transaction has committed. A crash before that redelivers the batch and
  planning it again changes nothing, and so does a record the relay published twice.
- **A record that cannot be read stops its batch.** An undecodable record that may be a
  ``KeysShredded`` is retried with backoff (logged as an error) rather than skipped: a
  notifier older than the relay's schemas waits for its upgrade instead of losing an erasure.
  The database or broker being away is retried the same way.
- **Deliveries run beside the consumer**, in a thread of their own (``Dispatcher``), so a
  slow receiver never holds up polling (and the consumer group's heartbeat).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import ConnectionPool

from consumers.ingest import RETRYABLE
from ledger.application.service import Ledger
from ledger.kafka.consumer import (
    KafkaConsumer,
    Polled,
    TopicPartition,
    commit_polled,
    make_consumer,
    rewind,
)
from ledger.keys.crypto import KeyEncryptionKey
from ledger.plumbing.backoff import Backoff
from ledger.plumbing.logs import get as get_logger
from ledger.process.runtime import kek_ring
from ledger.process.settings import ConfigError, Settings
from ledger.storage import pg_session
from ledger.webhooks.dispatch import Dispatcher
from ledger.webhooks.notice import Erasure
from ledger.webhooks.outbox import Outbox
from ledger.webhooks.retry import RetryPolicy
from ledger.webhooks.sender import Sender
from ledger.webhooks.tables import create_tables
from ledger.wire import avro

ERASURE = "KeysShredded"
CHANGE = "ChangeNoticeDue"
NOTICES = {ERASURE.encode(), CHANGE.encode()}


class UnreadableRecord(Exception):
    """A ledger-topic record that may be an erasure does not decode."""


RETRIED: tuple[type[BaseException], ...] = (UnreadableRecord, *RETRYABLE)


def erasure_of(record: Any) -> Erasure | None:
    """The erasure or change notice a ledger-topic record carries, or None for any other
    event."""
    event_type = dict(record.headers or []).get("event_type")
    if event_type is not None and event_type not in NOTICES:
        return None
    try:
        _, decoded = avro.decode(record.value or b"")
    except (avro.UndecodableMessage, avro.UnknownSchema) as exc:
        where = f"partition {record.partition} offset {record.offset}"
        raise UnreadableRecord(f"{type(exc).__name__} at {where}") from exc
    if decoded.get("event_type") == CHANGE:
        return Erasure.from_change_record(decoded)
    if decoded.get("event_type") != ERASURE:
        return None
    return Erasure.from_record(decoded)


class Notifier:
    def __init__(
        self,
        consumer: KafkaConsumer,
        outbox: Outbox,
        dispatcher: Dispatcher,
        topic: str,
        *,
        batch_size: int = 500,
    ) -> None:
        self.consumer = consumer
        self.outbox = outbox
        self.dispatcher = dispatcher
        self.topic = topic
        self.batch_size = batch_size
        self.log = get_logger("notifier", topic=topic)
        self._backoff = Backoff()
        self._stop = threading.Event()  # run()'s, so a backoff ends at once on SIGTERM

    def run(self, stop: threading.Event) -> None:
        """Consumes until ``stop`` is set, with the delivery loop in a second thread; when
        either ends, both stop."""
        self._stop = stop
        deliveries = threading.Thread(
            target=self.dispatcher.run, args=(stop,), name="webhook-deliveries", daemon=True
        )
        self.consumer.subscribe([self.topic])
        deliveries.start()
        self.log.info("notifier_started", group=self.consumer.config["group_id"])
        try:
            while not stop.is_set():
                self.poll_once()
        finally:
            stop.set()
            self.dispatcher.wake()
            deliveries.join()
            self.log.info("notifier_stopped")

    def poll_once(self, timeout_ms: int = 500) -> int | None:
        """Plans the erasures of one polled batch; returns how many were new (None: nothing
        polled, or the batch will be retried)."""
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.batch_size)
        records = [r for tp in sorted(polled) for r in polled[tp]]
        if not records:
            return None
        try:
            planned = self.plan(records)
        except RETRIED as exc:
            self._retry_later(polled, exc)
            return None
        self._backoff.succeeded()
        self._commit(polled)
        return planned

    def plan(self, records: Sequence[Any]) -> int:
        erasures = [e for e in (erasure_of(r) for r in records) if e is not None]
        if not erasures:
            return 0
        planned = self.outbox.plan(erasures, datetime.now(UTC))
        for erasure, deliveries in planned:
            self.log.info(
                "erasure_planned" if erasure.is_erasure else "change_notice_planned",
                tenant=erasure.tenant,
                subject_id=str(erasure.subject_id),
                request_event_id=erasure.request_event_id,
                sequence=erasure.sequence,
                deliveries=len(deliveries),
                no_endpoint=sum(d.status == "no_endpoint" for d in deliveries),
            )
        if planned:
            self.dispatcher.wake()
        return len(planned)

    def _commit(self, polled: Polled) -> None:
        failed = commit_polled(self.consumer, polled)
        if failed:  # the new owner re-reads these records and plans nothing new
            self.log.warning("commit_failed", error=failed)

    def _retry_later(self, polled: dict[TopicPartition, list[Any]], exc: BaseException) -> None:
        wait = self._backoff.failed()
        log = self.log.error if isinstance(exc, UnreadableRecord) else self.log.warning
        log("batch_will_be_retried", error=str(exc) or type(exc).__name__, backoff_s=wait)
        rewind(self.consumer, polled)
        self._stop.wait(wait)


def retry_policy(settings: Settings) -> RetryPolicy:
    if settings.webhook_retry_max < settings.webhook_retry_base:
        raise ConfigError(
            "LEDGER_WEBHOOK_RETRY_MAX must not be less than LEDGER_WEBHOOK_RETRY_BASE"
        )
    return RetryPolicy(
        settings.webhook_max_attempts, settings.webhook_retry_base, settings.webhook_retry_max
    )


def settings_kek(settings: Settings) -> KeyEncryptionKey:
    """The KEK ring the ledger uses: new secrets are wrapped by the current KEK, and a
    secret wrapped by a previous one still opens while that one is configured."""
    return kek_ring(settings)


def open_notifier(settings: Settings, ledger: Ledger, **consumer_overrides: Any) -> Notifier:
    """The notifier as ``ledger notify`` runs it; :func:`close_notifier` releases it."""
    policy = retry_policy(settings)
    kek = settings_kek(settings)
    pool: ConnectionPool[Any] = ConnectionPool(
        settings.require_database(),
        min_size=1,
        max_size=4,
        kwargs={
            "connect_timeout": 10,
            **pg_session.connection_kwargs(settings.eventsourcing_env()),
        },
        check=ConnectionPool.check_connection,
        open=True,
        name="notifier",
    )
    try:
        with pool.connection() as conn:
            create_tables(conn, settings.database_schema)
        consumer = make_consumer(
            settings.require_kafka(),
            group=settings.notifier_group,
            allow_auto_create_topics=False,  # the relay creates the ledger topic and fills it
            **{"fetch_max_wait_ms": settings.kafka_fetch_wait_ms, **consumer_overrides},
        )
    except BaseException:
        pool.close()
        raise
    timeout = settings.webhook_timeout
    lease = timeout * 2 + timedelta(seconds=30)
    outbox = Outbox(pool, settings.database_schema, policy, lease=lease)
    dispatcher = Dispatcher(ledger, outbox, kek, Sender(timeout.total_seconds()))
    return Notifier(consumer, outbox, dispatcher, settings.topics.ledger)


def close_notifier(notifier: Notifier) -> None:
    notifier.consumer.close()
    notifier.dispatcher.sender.close()
    notifier.outbox.pool.close()
