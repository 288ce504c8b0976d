"""Runs a view: follows the ledger's notification log and applies events in batches.

Rules the runner keeps:

- **Push, not poll.** Events arrive through the `eventsourcing` subscription
  (``ApplicationSubscription``, woken by PostgreSQL LISTEN/NOTIFY on every insert), so a
  recorded event reaches the view within one batch commit.
- **Batches form by themselves.** A reader thread moves (event, tracking) pairs from the
  subscription into a bounded queue; the runner takes whatever is waiting, up to the batch
  size, and applies it in one transaction (:meth:`View.process_batch`). Idle, a batch is one
  event and lands at once; behind, batches are full and the view catches up at thousands of
  events a second instead of one transaction per event.
- **Never skips an event.** Any failure — the database going away, an event that cannot be
  applied — rolls the batch back; the runner backs off, reopens the subscription at the
  view's committed position and tries again. Exactly-once is the view's job (its tracking row).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.projection import ApplicationSubscription

from ledger.application.service import LedgerReader
from ledger.plumbing.backoff import Backoff
from ledger.plumbing.logs import get as get_logger
from projections.view import View

LOG_EVERY_S = 30.0

Item = tuple[Any, Tracking]


class _Feed:
    """The subscription, read by a thread into a bounded queue."""

    def __init__(self, reader: LedgerReader, position: int, capacity: int) -> None:
        self._subscription = ApplicationSubscription(reader, gt=position)
        self._queue: queue.Queue[Item | BaseException] = queue.Queue(maxsize=capacity)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="projection-feed", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for item in self._subscription:
                while not self._stopped.is_set():
                    try:
                        self._queue.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._stopped.is_set():
                    return
        except BaseException as exc:  # handed to the runner, which retries
            self._queue.put(exc)

    def take(self, limit: int, timeout: float) -> list[Item]:
        """Waits up to ``timeout`` for one item, then takes whatever else is waiting."""
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        batch: list[Item] = []
        item: Item | BaseException = first
        while True:
            if isinstance(item, BaseException):
                raise item
            batch.append(item)
            if len(batch) >= limit:
                return batch
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch

    def close(self) -> None:
        self._stopped.set()
        self._subscription.stop()
        self._thread.join(timeout=5)


class ProjectionRunner:
    def __init__(
        self,
        reader: LedgerReader,
        view: View,
        *,
        batch_size: int = 500,
        maintain_every_s: float = 600.0,
    ) -> None:
        self.reader = reader
        self.view = view
        self.batch_size = batch_size
        self.maintain_every_s = maintain_every_s
        self.log = get_logger("projection", projection=view.name)

    def run(self, stop: threading.Event) -> None:
        """Follows the ledger until ``stop`` is set, retrying with backoff after failures."""
        self.log.info("projection_started", position=self.view.position())
        backoff = Backoff()
        while not stop.is_set():
            try:
                self.follow(stop)
                backoff.succeeded()
            except Exception as exc:
                wait = backoff.failed()
                self.log.warning("projection_will_retry", error=type(exc).__name__, backoff_s=wait)
                stop.wait(wait)
        self.log.info("projection_stopped", position=self.view.position())

    def follow(
        self,
        stop: threading.Event,
        *,
        until: int | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> int:
        """Applies events until ``stop`` is set or, with ``until``, that position is reached.
        Returns the view's position."""
        position = self.view.position()
        if until is not None and position >= until:
            return position
        feed = _Feed(self.reader, position, capacity=self.batch_size * 4)
        next_upkeep = time.monotonic() if until is None else float("inf")
        next_log = time.monotonic() + LOG_EVERY_S
        try:
            while not stop.is_set():
                batch = feed.take(self.batch_size, timeout=0.5)
                if batch:
                    position = self.view.process_batch(batch)
                    if on_batch is not None:
                        on_batch(position)
                if until is not None and position >= until:
                    break
                now = time.monotonic()
                if now >= next_upkeep:
                    self._upkeep()
                    next_upkeep = now + self.maintain_every_s
                if now >= next_log:
                    self.log.info("projection_position", position=position)
                    next_log = now + LOG_EVERY_S
        finally:
            feed.close()
        return position

    def _upkeep(self) -> None:
        removed = self.view.maintain()
        if removed:
            self.log.info("retention_sweep", removed=removed)


def hold_lock(database_url: str, name: str, stop: threading.Event) -> Any:
    """Blocks until this process holds the named session lock (so a second runner of the
    same view stands by), returning the connection that holds it; None if stopped first."""
    while not stop.is_set():
        try:
            conn = psycopg.connect(database_url, autocommit=True, connect_timeout=10)
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [name]).fetchone()
        except psycopg.OperationalError:
            stop.wait(2.0)
            continue
        if row and row[0]:
            return conn
        conn.close()
        stop.wait(1.0)
    return None
