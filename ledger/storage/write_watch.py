"""The in-process watchdog over the ledger's write transactions (``LEDGER_WRITE_TIMEOUT``).

Every write of events holds the event table's ``EXCLUSIVE`` lock until it commits, so one
stalled writer stops every other: ingest, API commands, subject reports, checkpoints. The
server's own timeouts do not bound every stall: a backend waiting for the rest of a client
message ("active / ClientRead") runs no statement, is not "idle in transaction", and ignores
``pg_cancel_backend``. This watchdog does.

Rules this module keeps:

- **Every write transaction is registered** with its backend's pid and start while it is
  open (:meth:`WriteWatch.writing`), in every process that writes through the ledger's
  recorder: ``ledger ingest``, ``ledger serve``'s commands, ``relay``, ``project``, ``notify``.
- **Past the limit the backend is terminated**, from a connection of the watchdog's own
  (``pg_terminate_backend``: unlike a cancel, it ends a backend blocked reading from its
  client). The transaction rolls back and the lock is released; the writer gets an
  ``OperationalError`` and its batch is run again from the start. Nothing was committed, so
  no Kafka offset moved (offsets are committed only after the ledger transaction commits).
- **It is logged** (``write_stalled``, with pid and age, never data) and never raises into the
  process it guards: a failed termination is logged and tried again on the next tick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

log = structlog.get_logger("ledger.storage.write_watch")

Terminate = Callable[[int], bool]


class WriteWatch:
    """Open write transactions of this process, and the thread that ends overdue ones."""

    def __init__(
        self, limit_s: float, terminate: Terminate, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit_s = limit_s
        self._terminate = terminate
        self._clock = clock
        self._open: dict[int, tuple[int, float]] = {}  # token -> (backend pid, started)
        self._next = 0
        self._ended: set[int] = set()  # tokens whose backend was already terminated
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def writing(self, backend_pid: int) -> Iterator[None]:
        with self._lock:
            token, self._next = self._next, self._next + 1
            self._open[token] = (backend_pid, self._clock())
        self._start()
        try:
            yield
        finally:
            with self._lock:
                self._open.pop(token, None)
                self._ended.discard(token)

    def oldest_age(self) -> float:
        """Seconds the oldest open write transaction has been open (0 if none)."""
        with self._lock:
            starts = [started for _, started in self._open.values()]
        return max(0.0, self._clock() - min(starts)) if starts else 0.0

    def overdue(self) -> list[tuple[int, int, float]]:
        """(token, pid, age) of every open write past the limit not yet ended."""
        now = self._clock()
        with self._lock:
            return [
                (token, pid, now - started)
                for token, (pid, started) in self._open.items()
                if now - started > self.limit_s and token not in self._ended
            ]

    def check(self) -> list[int]:
        """Terminates the backend of every overdue write (once each); returns their pids."""
        ended = []
        for token, pid, age in self.overdue():
            try:
                done = self._terminate(pid)
            except Exception as exc:
                log.error("write_stall_not_ended", pid=pid, age_s=round(age, 1), error=str(exc))
                continue
            log.error("write_stalled", pid=pid, age_s=round(age, 1), limit_s=self.limit_s)
            with self._lock:
                if token in self._open:
                    self._ended.add(token)
            if done:
                ended.append(pid)
        return ended

    def close(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ledger-write-watch", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        tick = min(1.0, max(0.05, self.limit_s / 10))
        while not self._stop.wait(tick):
            self.check()
