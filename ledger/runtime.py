"""Builds the ledger application from settings: the one place that wires keys to storage."""

from __future__ import annotations

from ledger.application import Ledger, LedgerReader
from ledger.crypto import LocalKek
from ledger.settings import Settings


def open_ledger(settings: Settings) -> Ledger:
    kek, lookup_key = settings.require_keys()
    return Ledger(
        settings.eventsourcing_env(),
        kek=LocalKek(kek, settings.kek_id),
        lookup_key=lookup_key,
    )


def open_reader(settings: Settings) -> LedgerReader:
    """The ledger's events without keys, for processes that only read them."""
    return LedgerReader(settings.eventsourcing_env())
