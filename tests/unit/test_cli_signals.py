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


def test_a_signal_while_starting_reaches_the_loop_started_after() -> None:
    """A command waits for Kafka (with its own stop) before its main loop asks for one: a
    SIGTERM in between — ``ledger dev`` killed while its children start — must stop the loop,
    not be swallowed by the first handler."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while_starting = stop_on_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        assert while_starting.wait(2.0)
        assert stop_on_signals().is_set()
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_handlers_installed_by_someone_else_get_a_fresh_event() -> None:
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        first = stop_on_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        assert first.wait(2.0)
        signal.signal(signal.SIGTERM, saved[signal.SIGTERM])
        assert not stop_on_signals().is_set()
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
