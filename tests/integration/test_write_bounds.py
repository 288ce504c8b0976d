"""Every write transaction of the ledger is bounded (issue 19), on a real PostgreSQL: the
sessions carry their name and timeouts, a write open past ``LEDGER_WRITE_TIMEOUT`` is ended by
the watchdog and the event table's lock freed, and ``/readyz`` and ``/metrics`` say the write
path is stalled while it lasts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from fastapi.testclient import TestClient
from psycopg import sql

from ledger.application.service import Ledger
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings
from ledger.storage.postgres import PostgresLedgerRecorder
from projections.api.app import create_app, prepare
from tests import stall_repro


@pytest.fixture
def bounded(settings_db_only: Settings) -> Settings:
    return settings_db_only.with_overrides(write_timeout=timedelta(seconds=1))


@pytest.fixture
def ledger(bounded: Settings) -> Iterator[Ledger]:
    app = open_ledger(bounded)
    yield app
    app.close()


def _lock_events(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(
        sql.SQL("LOCK TABLE {}.ledger_events IN EXCLUSIVE MODE").format(sql.Identifier(schema))
    )


def test_the_ledgers_sessions_are_named_and_bounded(ledger: Ledger) -> None:
    store = ledger.store
    assert isinstance(store, PostgresLedgerRecorder)
    with store.datastore.get_connection() as conn:
        shown = conn.execute(
            "SELECT current_setting('application_name') AS name, "
            "current_setting('statement_timeout') AS statement, "
            "current_setting('idle_in_transaction_session_timeout') AS idle"
        ).fetchone()
        version = conn.info.server_version
    assert shown == {"name": "ledger", "statement": "30s", "idle": "10s"}
    if version >= 170000:
        with store.datastore.get_connection() as conn:
            row = conn.execute("SELECT current_setting('transaction_timeout') AS t").fetchone()
        assert row == {"t": "2s"}  # the server's backstop, after the watchdog


def test_a_write_open_past_the_limit_is_ended_and_its_lock_freed(
    ledger: Ledger, bounded: Settings
) -> None:
    store = ledger.store
    assert isinstance(store, PostgresLedgerRecorder)
    started = time.monotonic()
    with (
        pytest.raises((OperationalError, psycopg.OperationalError)),
        store.datastore.get_connection() as conn,
        store.write_watch.writing(conn.info.backend_pid),
        conn.transaction(),
    ):
        _lock_events(conn, bounded.database_schema)
        while time.monotonic() - started < 30:  # a client stuck mid-batch
            conn.execute("SELECT pg_sleep(0.2)")
    ended_after = time.monotonic() - started
    print(f"\nstalled write ended after {ended_after:.2f} s (limit 1 s)")
    assert ended_after < 10
    with psycopg.connect(bounded.require_database(), autocommit=True) as other:
        other.execute("SET lock_timeout = '2s'")
        with other.transaction():
            _lock_events(other, bounded.database_schema)  # free again


def test_a_stalled_write_path_makes_the_api_unready(ledger: Ledger, bounded: Settings) -> None:
    prepare(bounded)
    with TestClient(create_app(bounded), raise_server_exceptions=False) as api:
        assert api.get("/readyz").status_code == 200
        with psycopg.connect(bounded.require_database()) as holder:
            _lock_events(holder, bounded.database_schema)  # a writer that does not finish
            time.sleep(1.5)
            answer = api.get("/readyz")
            metrics = api.get("/metrics").text
            holder.rollback()
        assert answer.status_code == 503
        body = answer.json()
        assert body["write_stalled"] is True and body["oldest_write_s"] > 1
        age = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("ledger_write_transaction_age_seconds ")
        )
        assert age > 1
        ready = api.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["write_stalled"] is False


def test_a_batch_larger_than_the_socket_buffer_is_saved_while_another_writer_holds_the_lock(
    settings_db_only: Settings,
) -> None:
    """Issue 19's cause: the pipelined save of such a batch stalled for good (see
    ``tests/stall_repro.py``); each statement is now sent whole before its result is read."""
    bounded = settings_db_only  # the default write timeout: this batch must not need a retry
    ledger = open_ledger(bounded)
    store = ledger.store
    assert isinstance(store, PostgresLedgerRecorder)
    events, rows = stall_repro.batch(3_000)
    done = threading.Event()
    errors: list[BaseException] = []

    def save() -> None:
        try:
            store.insert_events(events, **rows)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    with psycopg.connect(bounded.require_database()) as holder:
        _lock_events(holder, bounded.database_schema)  # an API command's save, say
        threading.Thread(target=save, daemon=True).start()
        time.sleep(0.5)  # the writer fills the socket while its backend waits for the lock
        released = time.monotonic()
        holder.rollback()
    assert done.wait(60), "the batch stalled"
    ledger.close()
    print(f"\n3,000 events saved {time.monotonic() - released:.2f} s after the lock was freed")
    assert errors == []
    with psycopg.connect(bounded.require_database()) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.ingest_receipts").format(
                sql.Identifier(bounded.database_schema)
            )
        ).fetchone()
    assert row == (3_000,)
