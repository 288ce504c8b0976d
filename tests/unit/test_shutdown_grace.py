"""The bounded stop exits whatever becomes of its log lines (a child's parent died, and the
pipe its output went to is gone)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from ledger.cli import common


class Exited(Exception):
    pass


def test_the_grace_exit_happens_even_when_logging_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def exit_(code: int) -> None:
        exits.append(code)
        raise Exited

    monkeypatch.setattr(common.log, "info", broken)
    monkeypatch.setattr(common.log, "error", broken)
    monkeypatch.setattr(common.os, "_exit", exit_)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Exited):
        common._exit_after_grace(stop, [15], timedelta(0))
    assert exits == [1]
