"""The open-loop load generator the benchmarks report from."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from ledger.bench.load import Call, Summary, open_loop, percentile


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 50)


def test_every_call_runs_once_on_its_own_workers_connection() -> None:
    seen: list[int] = []
    opened: list[str] = []
    lock = threading.Lock()

    @contextlib.contextmanager
    def worker() -> Iterator[Call]:
        with lock:
            opened.append(threading.current_thread().name)
        yield lambda i: seen.append(i)

    summary = open_loop(worker, rate=1000, count=200, workers=4)
    assert sorted(seen) == list(range(200))
    assert len(set(opened)) == 4
    assert summary.count == 200 and summary.errors == 0


def test_failed_calls_are_counted_with_the_first_reason() -> None:
    @contextlib.contextmanager
    def worker() -> Iterator[Call]:
        def call(i: int) -> None:
            if i % 10 == 0:
                raise AssertionError("wrong answer")

        yield call

    summary = open_loop(worker, rate=1000, count=100, workers=2)
    assert summary.errors == 10
    assert summary.count == 90
    assert "wrong answer" in summary.first_error
    assert "errors 10" in summary.line()


def test_latency_counts_from_the_scheduled_start_when_the_server_falls_behind() -> None:
    """One worker, 10 ms per call, 200 calls/s asked: calls queue up, and the wait counts."""

    @contextlib.contextmanager
    def worker() -> Iterator[Call]:
        yield lambda i: time.sleep(0.010)

    summary = open_loop(worker, rate=200, count=40, workers=1)
    # The 40th call was due at 195 ms but can only finish after 40 x 10 ms = 400 ms.
    assert summary.max_s >= 0.19
    assert summary.p50_s > 0.05


def test_summary_line_is_in_milliseconds() -> None:
    line = Summary.of([0.001, 0.002, 0.003]).line()
    assert "p50    2.00 ms" in line and "max    3.00 ms" in line and "n=3" in line
