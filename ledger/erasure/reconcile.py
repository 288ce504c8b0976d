"""Reconciling the key store with the erasures the ledger topic holds.

A database restored from a backup taken before an erasure still holds that subject's data key
and reference lookup, and its ledger does not say the subject was erased. The erasure is on the
ledger topic (``ledger.erasure.journal``). Reconciliation re-applies it. Rules it keeps:

- **Before anything is served.** ``ledger serve``, ``ledger ingest``, ``ledger project`` and
  ``ledger dev`` reconcile on start (:func:`reconcile_configured`), under an advisory lock so
  processes starting together wait for each other (the later ones find nothing new). If the
  ledger topic cannot be read the process does not start: a restored database must not serve
  an erased subject, and only the topic can tell.
- **What the topic says is made true here.** For each ``KeysShredded`` read: a subject of this
  ledger whose shredding is not recorded gets ``KeysShredded`` again — with the event id it has
  on the topic — saved in one transaction with the deletion of its key and lookup (the digest
  moves to ``erased_refs``), so new events for its reference are refused. A subject whose
  shredding is recorded but whose key or lookup is back (a key table restored on its own) is
  shredded again. A subject this database never held needs nothing.
- **Idempotent.** A second run reads nothing new (offsets are saved after the changes commit)
  and a repeated erasure changes nothing.
- **The ledger's sequence stays ahead of the topic.** Events recorded after the backup were
  published with sequences the restored database would hand out again, and consumers drop a
  sequence they have seen. Before anything new is recorded, the notification id sequence is
  moved past the greatest sequence read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from psycopg.sql import SQL, Identifier

from ledger.application.service import Ledger, LedgerReader
from ledger.domain.subject import Subject
from ledger.erasure.journal import ErasureJournal
from ledger.plumbing.logs import get as get_logger
from ledger.process.runtime import open_reader
from ledger.process.settings import Settings
from ledger.storage.postgres import PostgresLedgerRecorder, connect_direct
from ledger.storage.store import LedgerStore, Shredded
from ledger.webhooks.notice import Erasure

ATTEMPTS = 3
Applied = Literal["recorded", "shredded", "already_erased", "not_in_database"]


@dataclass
class ReconcileReport:
    records_read: int = 0
    erasures_read: int = 0
    recorded: int = 0  # KeysShredded recorded again, with the shredding
    shredded: int = 0  # key or lookup back although the shredding was recorded: shredded
    already_erased: int = 0
    not_in_database: int = 0
    topic_exists: bool = True

    def add(self, outcome: Applied) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    @property
    def changed(self) -> int:
        return self.recorded + self.shredded

    def summary(self) -> str:
        return (
            f"read {self.records_read} ledger records ({self.erasures_read} erasures): "
            f"{self.changed} subjects shredded now ({self.recorded} with KeysShredded recorded "
            f"again), {self.already_erased} already erased, "
            f"{self.not_in_database} not in this database"
        )


def reconcile(reader: LedgerReader, journal: ErasureJournal) -> ReconcileReport:
    """Re-applies every erasure published since this database last reconciled."""
    log = get_logger("reconcile", topic=journal.topic)
    read = journal.read()
    report = ReconcileReport(read.records, len(read.erasures), topic_exists=read.topic_exists)
    keep_sequence_ahead(reader.store, read.max_sequence)
    for erasure in read.erasures:
        outcome = apply_erasure(reader, erasure)
        report.add(outcome)
        if outcome in ("recorded", "shredded"):
            log.warning("erasure_reapplied", subject_id=str(erasure.subject_id), how=outcome)
    journal.save(read)
    if isinstance(reader, Ledger):
        reader.keys.forget([e.subject_id for e in read.erasures])
    if not read.topic_exists:  # a new cluster (or the development broker): nothing to read
        log.info("ledger_topic_absent")
    log.info(
        "reconciled",
        records=report.records_read,
        erasures=report.erasures_read,
        recorded=report.recorded,
        shredded=report.shredded,
        already_erased=report.already_erased,
        not_in_database=report.not_in_database,
    )
    return report


def apply_erasure(reader: LedgerReader, erasure: Erasure) -> Applied:
    for attempt in range(ATTEMPTS):
        try:
            return _apply_once(reader, erasure)
        except IntegrityError:  # another process recorded an event of this subject meanwhile
            if attempt + 1 == ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _apply_once(reader: LedgerReader, erasure: Erasure) -> Applied:
    gone = Shredded(erasure.tenant, erasure.subject_id)
    had_key = bool(reader.store.wrapped_keys([erasure.subject_id]))
    subject: object = None
    with contextlib.suppress(AggregateNotFoundError):
        subject = reader.repository.get(erasure.subject_id)
    if not isinstance(subject, Subject):
        if had_key:  # a key without its subject's events: a partial restore
            reader.store.shred([gone])
            return "shredded"
        return "not_in_database"
    if subject.reapply_shredding(
        request_event_id=erasure.request_event_id,
        disclosed_to={r: list(ids) for r, ids in erasure.disclosed_to.items()},
        occurred_at=erasure.requested_at,
    ):
        reader.save(subject, shredded=[gone])
        return "recorded"
    reader.store.shred([gone])  # idempotent; also removes a lookup restored on its own
    return "shredded" if had_key else "already_erased"


def keep_sequence_ahead(store: LedgerStore, at_least: int) -> None:
    """Moves the ledger's notification id sequence to at least ``at_least`` (PostgreSQL; the
    in-memory store numbers its events itself)."""
    if at_least <= 0 or not isinstance(store, PostgresLedgerRecorder):
        return
    table = SQL("{}.{}").format(store.schema, Identifier(store.events_table_name))
    with store.datastore.transaction(commit=True) as curs:
        curs.execute(
            SQL(
                "SELECT setval(s.seq, %(n)s) FROM (SELECT pg_get_serial_sequence("
                "%(table)s, 'notification_id')::regclass AS seq) s "
                "WHERE COALESCE(pg_sequence_last_value(s.seq), 0) < %(n)s"
            ),
            {"n": at_least, "table": table.as_string(curs)},
        )


@contextlib.contextmanager
def reconcile_lock(store: LedgerStore) -> Iterator[None]:
    """Serialises reconciliations of one ledger schema (processes starting together)."""
    if not isinstance(store, PostgresLedgerRecorder):
        yield
        return
    with connect_direct(store.datastore) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"{store.schema_name}:reconcile"])
        yield


def reconcile_configured(settings: Settings, *, timeout_s: float = 60.0) -> ReconcileReport:
    """Reconciles the configured database with the configured ledger topic.

    Raises ``ConfigError`` without a broker, ``BrokerUnavailable`` when it cannot be reached and
    ``JournalUnreadable`` when the topic cannot be read to its end.
    """
    bootstrap = settings.require_kafka()
    reader = open_reader(settings)
    try:
        with reconcile_lock(reader.store):
            journal = ErasureJournal(
                bootstrap, settings.topics.ledger, reader.store, timeout_s=timeout_s
            )
            return reconcile(reader, journal)
    finally:
        reader.close()
