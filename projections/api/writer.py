"""The API's way to record a fact (its own ledger application, used by one thread at a time)
and to read the event store itself (proofs, receipts, certificates)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from ledger.application.service import Ledger, LedgerReader
from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import Settings
from ledger.storage.store import LedgerStore
from ledger.wire.contract import Command
from projections.api.models import CommandOutcome
from projections.api.problems import Conflict

T = TypeVar("T")


class LedgerWriter:
    """The API's own ledger application, opened on first use and used by one thread at a time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ledger: Ledger | None = None
        self._lock = threading.Lock()

    def record(self, command: Command) -> CommandOutcome:
        with self._lock:
            if self._ledger is None:
                self._ledger = open_ledger(self._settings)
            outcome = self._ledger.record([command])[0]
        if outcome.status == "rejected":
            raise Conflict(outcome.detail, reason=outcome.reason)
        return CommandOutcome(
            status=outcome.status,
            event_id=command.envelope.event_id,
            subject_id=outcome.aggregate_id,
        )

    def call(self, fn: Callable[[Ledger], T]) -> T:
        """Runs ``fn`` with the API's ledger application, one thread at a time."""
        with self._lock:
            if self._ledger is None:
                self._ledger = open_ledger(self._settings)
            return fn(self._ledger)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()


class LedgerReads:
    """The API's read-only access to the event store (proofs, receipts, certificates), opened
    on first use. Reads run in the server's thread pool, side by side: the store's connection
    pool serves them, and no write waits for them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._reader: LedgerReader | None = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[[LedgerStore], T]) -> T:
        with self._lock:
            if self._reader is None:
                self._reader = open_reader(self._settings)
            reader = self._reader
        return fn(reader.store)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
