"""The write watchdog and the session bounds, without a database (a fake clock and a fake
terminate stand in for time and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.process.settings import ConfigError
from ledger.process.settings import load as load_settings
from ledger.storage import pg_session
from ledger.storage.write_watch import WriteWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_write_past_the_limit_has_its_backend_terminated_once() -> None:
    clock, ended = Clock(), []
    watch = WriteWatch(30.0, lambda pid: ended.append(pid) or True, clock=clock)
    watch._start = lambda: None  # type: ignore[method-assign]  # no thread: checked by hand
    with watch.writing(4242):
        clock.now += 29
        assert watch.check() == []
        assert watch.oldest_age() == 29
        clock.now += 2
        assert watch.check() == [4242]
        assert watch.check() == []  # not terminated again while the writer unwinds
    assert ended == [4242]
    assert watch.oldest_age() == 0


def test_the_oldest_of_several_open_writes_is_reported() -> None:
    clock = Clock()
    watch = WriteWatch(30.0, lambda pid: True, clock=clock)
    watch._start = lambda: None  # type: ignore[method-assign]
    with watch.writing(1):
        clock.now += 10
        with watch.writing(2):
            clock.now += 5
            assert watch.oldest_age() == 15


def test_a_failed_termination_is_tried_again_and_never_raises() -> None:
    clock, calls = Clock(), []

    def terminate(pid: int) -> bool:
        calls.append(pid)
        if len(calls) == 1:
            raise OSError("database unreachable")
        return True

    watch = WriteWatch(1.0, terminate, clock=clock)
    watch._start = lambda: None  # type: ignore[method-assign]
    with watch.writing(7):
        clock.now += 2
        assert watch.check() == []
        assert watch.check() == [7]
    assert calls == [7, 7]


def test_sessions_are_named_after_the_ledger_command() -> None:
    assert pg_session.process_name(["/venv/bin/ledger", "ingest", "--once"]) == "ledger ingest"
    assert pg_session.process_name(["/x/ledger/cli/main.py", "serve"]) == "ledger serve"
    assert pg_session.process_name(["pytest", "tests"]) == "ledger"


def test_transaction_timeout_is_set_only_where_the_server_has_it() -> None:
    env = {
        pg_session.STATEMENT_TIMEOUT_MS: "30000",
        pg_session.WRITE_TIMEOUT_MS: "60000",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "15",
    }
    bounds = (
        "-c statement_timeout=30000ms -c lock_timeout=10s "
        "-c idle_in_transaction_session_timeout=15s"
    )
    assert pg_session.options(env, 160_004) == bounds
    assert pg_session.options(env, 180_000) == bounds + " -c transaction_timeout=120000ms"


def test_the_bounds_are_read_from_settings_and_reach_the_eventsourcing_environment() -> None:
    s = load_settings(
        {
            "LEDGER_DATABASE_URL": "postgresql://u@db:5432/ledger",
            "LEDGER_WRITE_TIMEOUT": "45s",
            "LEDGER_STATEMENT_TIMEOUT": "20s",
            "LEDGER_LOCK_TIMEOUT": "5s",
            "LEDGER_IDLE_TRANSACTION_TIMEOUT": "15s",
        }
    )
    assert s.write_timeout == timedelta(seconds=45)
    env = s.eventsourcing_env()
    assert env[pg_session.WRITE_TIMEOUT_MS] == "45000"
    assert env[pg_session.STATEMENT_TIMEOUT_MS] == "20000"
    assert env["POSTGRES_LOCK_TIMEOUT"] == "5"
    assert env["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"] == "15"


def test_a_zero_write_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match="LEDGER_WRITE_TIMEOUT"):
        load_settings({"LEDGER_WRITE_TIMEOUT": "0s"})
