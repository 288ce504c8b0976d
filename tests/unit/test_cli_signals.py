"""Long-running commands stop cleanly on every signal a user or a supervisor sends."""

from __future__ import annotations

import os
import signal
import threading
from types import SimpleNamespace

import pytest

from ledger.cli.common import stop_on_signals


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_ask_the_loop_to_finish(signum: signal.Signals) -> None:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        stop = stop_on_signals()
        assert not stop.is_set()
        os.kill(os.getpid(), signum)
        assert stop.wait(2.0)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_a_signal_while_starting_reaches_the_main_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ledger project`` killed while it waits for Kafka (``ledger dev``'s children, when
    ``ledger dev`` dies as they start) must stop, not run on with the signal swallowed."""
    from ledger.cli import project

    seen: list[bool] = []

    def signalled_while_waiting(s: object, stop: threading.Event) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    class Reader:
        def close(self) -> None:
            pass

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    monkeypatch.setattr(project, "settings", lambda: SimpleNamespace(shutdown_grace=None))
    monkeypatch.setattr(project, "wait_until_kafka_admits", signalled_while_waiting)
    monkeypatch.setattr(project, "before_serving", lambda s: None)
    monkeypatch.setattr(project, "_reader", lambda s: Reader())
    monkeypatch.setattr(project, "run_views", lambda s, r, names, stop: seen.append(stop.is_set()))
    try:
        project.run(SimpleNamespace(invoked_subcommand=None), only=None)  # type: ignore[arg-type]
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert seen == [True]
