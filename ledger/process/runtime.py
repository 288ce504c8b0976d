"""Builds the ledger application from settings: the one place that wires keys to storage."""

from __future__ import annotations

from ledger.application.service import Ledger, LedgerReader
from ledger.keys.crypto import LocalKek
from ledger.keys.kek import KeyRing
from ledger.process.settings import Settings


def kek_ring(settings: Settings) -> KeyRing:
    """The current KEK, which makes every new wrap, and the previous ones that still unwrap."""
    kek, _ = settings.require_keys()
    previous = [LocalKek(key, kek_id) for kek_id, key in settings.kek_previous]
    return KeyRing(LocalKek(kek, settings.kek_id), previous)


def open_ledger(settings: Settings) -> Ledger:
    _, lookup_key = settings.require_keys()
    return Ledger(
        settings.eventsourcing_env(),
        kek=kek_ring(settings),
        lookup_key=lookup_key,
        ingest_retention=settings.ingest_retention,
        ingest_session_max_messages=settings.ingest_session_max_messages,
        ingest_session_max_age=settings.ingest_session_max_age,
        subject_cache_size=settings.subject_cache_size,
    )


def ensure_ingest_key(settings: Settings) -> None:
    """Makes the first ingest key pair if there is none (before the API serves it)."""
    ledger = open_ledger(settings)
    try:
        ledger.ingest_keys.current()
    finally:
        ledger.close()


def open_reader(settings: Settings) -> LedgerReader:
    """The ledger's events without keys, for processes that only read them."""
    return LedgerReader(settings.eventsourcing_env())
