"""Long-running commands stop cleanly on every signal a user or a supervisor sends."""

from __future__ import annotations

import os
import signal

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
