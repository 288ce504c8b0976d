"""The ingest consumer: Kafka ``compliance.ingest`` → the ledger.

Rules this process keeps:

- **A polled batch is one ledger transaction.** Valid events of the batch are recorded
  together by :meth:`Ledger.record`; invalid ones are refused individually.
- **Offsets are committed last.** A partition's offset is committed only after the ledger
  transaction has committed *and* the rejected topic has acknowledged every rejection of the
  batch. A crash at any point before that makes Kafka redeliver the batch; the ledger's
  receipts turn the re-recording into ``duplicate`` outcomes, so every event is recorded
  exactly once. A rejection may then be published twice; its ``source.*`` headers identify it.
- **Nothing is dropped silently.** Every message is recorded, reported duplicate, or published
  on the rejected topic with a ``reason`` header (a stable code) and a ``detail`` header
  (for people; never a personal value). The rejected copy never holds a personal field in
  clear: such fields are set to null (header ``removed`` names them); sealed ones stay.
- **A message is bounded.** One longer than ``max_message_bytes``
  (``LEDGER_INGEST_MAX_MESSAGE_BYTES``, default 256 KiB: well above the largest event the
  content rules allow) is rejected as ``message_too_large`` before any decoding.
- **The process keeps running.** If the database or the broker is unreachable, the consumer
  rewinds to the start of the batch and retries with backoff. A message that fails for a
  reason no rule names (a bug) is rejected as ``internal_error`` rather than blocking its
  partition.
- **Sealed fields are opened with the ledger's ingest keys** (``Ledger.ingest_keys``) while
  decoding; one that does not open is a rejection (``ingest_key_unknown``,
  ``ingest_key_destroyed``, ``ingest_seal_invalid``) whose detail names the field, never its
  value. Personal fields in clear are refused later, by the tenant's policy.
- **Retired ingest keys are destroyed on time.** On start and hourly the consumer destroys
  the private keys retired longer ago than ``LEDGER_INGEST_RETENTION``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg_pool
from eventsourcing import persistence
from kafka.errors import KafkaError

from ledger.application.service import Ledger, Outcome
from ledger.domain.rules import RuleViolation
from ledger.kafka.consumer import (
    KafkaConsumer,
    Polled,
    TopicPartition,
    commit_polled,
    rewind,
)
from ledger.kafka.producer import KafkaProducer
from ledger.kafka.topics import Topics
from ledger.plumbing.backoff import Backoff
from ledger.plumbing.logs import get as get_logger
from ledger.wire import avro, contract

RETRYABLE: tuple[type[BaseException], ...] = (
    persistence.OperationalError,
    persistence.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    KafkaError,
)
KEY_MAINTENANCE_S = 3600.0
KEY_MAINTENANCE_RETRY_S = 60.0
SHRED_CHECK_S = 1.0
MAX_MESSAGE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str


@dataclass(frozen=True)
class BatchReport:
    messages: int
    recorded: int
    duplicates: int
    rejected: int
    seconds: float


def classify(
    value: bytes | None,
    opener: contract.IngestOpener | None = None,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    sent_at: datetime | None = None,
) -> contract.Command | Rejection:
    """Decodes one message into a command, or says why it is not one. ``sent_at`` is the
    Kafka record's timestamp (a sealing session's age is checked against it). An unreachable
    database (while the opener reads ingest keys) raises: the batch is retried."""
    if not value:
        return Rejection("undecodable", "empty message")
    if len(value) > max_bytes:
        return Rejection(
            "message_too_large", f"message of {len(value)} bytes exceeds the {max_bytes}-byte limit"
        )
    try:
        return contract.command_from_message(value, opener, sent_at)
    except avro.UndecodableMessage as exc:
        return Rejection("undecodable", str(exc))
    except avro.UnknownSchema as exc:
        return Rejection("unknown_schema", str(exc))
    except RuleViolation as exc:
        return Rejection(exc.code, exc.detail)
    except RETRYABLE:
        raise
    except Exception as exc:  # a bug must not stop the partition
        return Rejection("internal_error", f"decoding failed: {type(exc).__name__}")


class IngestConsumer:
    def __init__(
        self,
        ledger: Ledger,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        topics: Topics,
        *,
        batch_size: int = 500,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.ledger = ledger
        self.consumer = consumer
        self.producer = producer
        self.topics = topics
        self.batch_size = batch_size
        self.max_message_bytes = max_message_bytes
        self.log = get_logger("ingest", topic=topics.ingest)
        self._backoff = Backoff()
        self._next_key_maintenance = 0.0
        self._next_shred_check = 0.0
        self._stop = threading.Event()  # run()'s, so a backoff ends at once on SIGTERM

    def run(
        self,
        stop: threading.Event,
        on_report: Callable[[BatchReport], None] | None = None,
    ) -> None:
        self._stop = stop
        self.consumer.subscribe([self.topics.ingest])
        self.log.info("ingest_started", group=self.consumer.config["group_id"])
        while not stop.is_set():
            self.maintain_keys()
            self.forget_shredded()
            report = self.poll_once()
            if report is not None and on_report is not None:
                on_report(report)
        self.log.info("ingest_stopped")

    def maintain_keys(self) -> list[str]:
        """Destroys expired ingest keys when due (on the first call, then hourly); returns
        the ids destroyed. A database outage postpones it by a minute."""
        now = time.monotonic()
        if now < self._next_key_maintenance:
            return []
        try:
            destroyed = self.ledger.ingest_keys.destroy_expired()
        except RETRYABLE as exc:
            self.log.warning("ingest_key_maintenance_failed", error=type(exc).__name__)
            self._next_key_maintenance = now + KEY_MAINTENANCE_RETRY_S
            return []
        self._next_key_maintenance = now + KEY_MAINTENANCE_S
        if destroyed:
            self.log.info("ingest_keys_destroyed", key_ids=destroyed)
        return destroyed

    def forget_shredded(self) -> None:
        """At most once a second, drops the data keys other processes shredded from this
        process's memory (each batch does it too, so this is for a quiet topic)."""
        now = time.monotonic()
        if now < self._next_shred_check:
            return
        self._next_shred_check = now + SHRED_CHECK_S
        try:
            self.ledger.forget_shredded_elsewhere()
        except RETRYABLE as exc:
            self.log.warning("shred_check_failed", error=type(exc).__name__)

    def poll_once(self, timeout_ms: int = 500) -> BatchReport | None:
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.batch_size)
        records = [r for tp in sorted(polled) for r in polled[tp]]
        if not records:
            return None
        try:
            report = self.process(records)
        except RETRYABLE as exc:
            self._retry_later(polled, exc)
            return None
        self._backoff.succeeded()
        self._commit(polled)
        return report

    def process(self, records: Sequence[Any]) -> BatchReport:
        started = time.perf_counter()
        classified = [
            classify(
                r.value,
                self.ledger.ingest_keys,
                max_bytes=self.max_message_bytes,
                sent_at=_timestamp(r),
            )
            for r in records
        ]
        commands = [c for c in classified if isinstance(c, contract.Command)]
        outcomes = iter(self._record(commands))
        rejections: list[tuple[Any, Rejection]] = []
        recorded = duplicates = 0
        for record, item in zip(records, classified, strict=True):
            if isinstance(item, Rejection):
                rejections.append((record, item))
                continue
            outcome = next(outcomes)
            if outcome.status == "recorded":
                recorded += 1
            elif outcome.status == "duplicate":
                duplicates += 1
            else:
                rejections.append((record, Rejection(outcome.reason or "", outcome.detail or "")))
        self._publish_rejections(rejections)
        self._count(recorded, duplicates, rejections)
        report = BatchReport(
            len(records), recorded, duplicates, len(rejections), time.perf_counter() - started
        )
        self.log.info(
            "batch_recorded",
            messages=report.messages,
            recorded=recorded,
            duplicates=duplicates,
            rejected=report.rejected,
            ms=round(report.seconds * 1000, 1),
        )
        return report

    def _count(
        self, recorded: int, duplicates: int, rejections: list[tuple[Any, Rejection]]
    ) -> None:
        """Outcome counters for metrics. A batch re-run after a crash counts again, so they
        are close to, not exactly, the messages seen; the ledger itself is exact."""
        counts = Counter({("recorded", ""): recorded, ("duplicate", ""): duplicates})
        counts.update(("rejected", r.reason) for _, r in rejections)
        try:
            self.ledger.store.add_counts(counts)
        except RETRYABLE as exc:  # metrics must not hold up the partition
            self.log.warning("counts_not_saved", error=type(exc).__name__)

    def _record(self, commands: list[contract.Command]) -> list[Outcome]:
        if not commands:
            return []
        try:
            return self.ledger.record(commands)
        except RETRYABLE:
            raise
        except Exception as exc:
            self.log.error("batch_failed_unexpectedly", error=type(exc).__name__)
        return [self._record_alone(c) for c in commands]

    def _record_alone(self, command: contract.Command) -> Outcome:
        try:
            return self.ledger.record([command])[0]
        except RETRYABLE:
            raise
        except Exception as exc:
            self.log.error(
                "event_failed_unexpectedly",
                event_id=command.envelope.event_id,
                tenant=command.envelope.tenant,
                error=type(exc).__name__,
            )
            return Outcome("rejected", "internal_error", f"recording failed: {type(exc).__name__}")

    def _publish_rejections(self, rejections: list[tuple[Any, Rejection]]) -> None:
        if not rejections:
            return
        rejected_at = datetime.now(UTC).isoformat().encode()
        futures = []
        for record, rejection in rejections:
            headers = [
                ("reason", rejection.reason.encode()),
                ("detail", rejection.detail.encode()),
                ("source.topic", record.topic.encode()),
                ("source.partition", str(record.partition).encode()),
                ("source.offset", str(record.offset).encode()),
                ("rejected_at", rejected_at),
            ]
            value, removed = (
                contract.without_plaintext(record.value) if record.value else (record.value, [])
            )
            if removed:
                headers.append(("removed", ",".join(removed).encode()))
            futures.append(
                self.producer.send(
                    self.topics.rejected, key=record.key, value=value, headers=headers
                )
            )
            self.log.warning(
                "message_rejected",
                reason=rejection.reason,
                partition=record.partition,
                offset=record.offset,
            )
        self.producer.flush()
        for future in futures:
            future.get(timeout=0)  # a refused send raises KafkaError: the batch is retried

    def _commit(self, polled: Polled) -> None:
        failed = commit_polled(self.consumer, polled)
        if failed:  # the new owner re-reads these records; receipts make them duplicates
            self.log.warning("commit_failed", error=failed)

    def _retry_later(self, polled: dict[TopicPartition, list[Any]], exc: BaseException) -> None:
        wait = self._backoff.failed()
        self.log.warning(
            "batch_will_be_retried",
            error=type(exc).__name__,
            attempt=self._backoff.failures,
            backoff_s=wait,
        )
        rewind(self.consumer, polled)
        self._stop.wait(wait)


def _timestamp(record: Any) -> datetime | None:
    """The Kafka record's timestamp (CreateTime or LogAppendTime), if it has one."""
    millis = getattr(record, "timestamp", None)
    if not isinstance(millis, int) or millis < 0:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC)
