"""Open-loop load: requests start on a fixed schedule, whether or not earlier ones finished.

Latency is measured from each request's *scheduled* start, not from when a worker got to it,
so a server that falls behind cannot hide it by slowing the generator down (coordinated
omission). Each worker thread owns its connection; a call that raises counts as an error.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

Call = Callable[[int], None]
"""One request; the argument is the request's index. Raises if the answer is wrong."""

Worker = Callable[[], AbstractContextManager[Call]]
"""Opens a worker's connection and yields its call; run once inside each worker thread."""


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    count: int
    errors: int
    p50_s: float
    p99_s: float
    max_s: float
    first_error: str = ""

    @classmethod
    def of(cls, samples: Sequence[float], errors: int = 0, first_error: str = "") -> Summary:
        return cls(
            count=len(samples),
            errors=errors,
            p50_s=percentile(samples, 50),
            p99_s=percentile(samples, 99),
            max_s=max(samples),
            first_error=first_error,
        )

    def line(self) -> str:
        text = (
            f"p50 {self.p50_s * 1000:7.2f} ms   p99 {self.p99_s * 1000:7.2f} ms   "
            f"max {self.max_s * 1000:7.2f} ms   n={self.count:,}"
        )
        if self.errors:
            text += f"   errors {self.errors:,} (first: {self.first_error})"
        return text


class _Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""

    def ok(self, latency: float) -> None:
        with self.lock:
            self.latencies.append(latency)

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            self.errors += 1
            self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"[:200]


def _serve(worker: Worker, jobs: queue.Queue[tuple[int, float] | None], out: _Results) -> None:
    try:
        with worker() as call:
            while (job := jobs.get()) is not None:
                index, due = job
                try:
                    call(index)
                except Exception as exc:
                    out.failed(exc)
                    continue
                out.ok(time.perf_counter() - due)
    except Exception as exc:  # the connection itself failed: its jobs stay undone
        out.failed(exc)


def open_loop(worker: Worker, *, rate: float, count: int, workers: int) -> Summary:
    """Issues ``count`` calls at ``rate`` per second over ``workers`` threads."""
    jobs: queue.Queue[tuple[int, float] | None] = queue.Queue()
    out = _Results()
    threads = [
        threading.Thread(target=_serve, args=(worker, jobs, out), daemon=True)
        for _ in range(workers)
    ]
    for thread in threads:
        thread.start()
    start = time.perf_counter() + 0.05
    for index in range(count):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        jobs.put((index, due))
    for _ in threads:
        jobs.put(None)
    for thread in threads:
        thread.join()
    if not out.latencies:
        raise RuntimeError(f"every request failed; first error: {out.first_error}")
    return Summary.of(out.latencies, out.errors, out.first_error)
