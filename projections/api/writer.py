"""The API's way to record a fact: its own ledger application, used by one thread at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from ledger.application.service import Ledger
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings
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
