"""Reproduces issue 19's stalled batch: ``python -m tests.stall_repro [rounds]``.

A batch of new subjects (a key, a reference and a receipt per event, and the events) is saved
with the ledger's own ``PostgresLedgerRecorder.insert_events`` while another session holds the
event table's lock for a moment, as an API command or ``ledger audit checkpoint`` does. The
events' INSERT is larger than the socket's buffer, so the writer cannot send it all while its
backend waits for the lock. Each round reports whether the save finished and, if not, what
``pg_stat_activity`` says of the writer's backend, then ends the stall (``pg_cancel_backend``
first, then ``pg_terminate_backend``) and says which of the two did.

Uses ``LEDGER_TEST_DATABASE_URL`` when set, else an embedded PostgreSQL (unix socket).
``STALL_EVENTS`` (default 942) sets the batch, ``STALL_HOLD_S`` (default 1, 0: no lock held)
the lock's hold. With the pipelined save that issue 19 removed, every round of 942 or 3,000
events stalled ("active / ClientRead", lock held; ``pg_cancel_backend`` did nothing), with or
without the lock held; 200 events never did. With the save since, no round stalls."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import conninfo_to_dict

from ledger.servers.embedded import EmbeddedPostgres
from ledger.storage.postgres import PostgresLedgerRecorder
from ledger.storage.store import Receipt, SubjectRef, WrappedKey

EVENTS = 942  # the burst of the report
STATE_BYTES = 1_500  # about what a sealed ConsentGranted weighs
HOLD_S = 1.0
WAIT_S = 15.0


def _datastore(url: str, schema: str) -> PostgresDatastore:
    p = conninfo_to_dict(url)
    return PostgresDatastore(
        dbname=str(p.get("dbname") or "postgres"),
        host=str(p.get("host") or "127.0.0.1"),
        port=str(p.get("port") or 5432),
        user=str(p.get("user") or "postgres"),
        password=str(p.get("password") or ""),
        schema=schema,
        lock_timeout=30,
    )


def batch(size: int) -> tuple[list[StoredEvent], dict[str, Any]]:
    """``size`` new subjects' first events with their key, reference and receipt rows."""
    events, keys, refs, receipts = [], [], [], []
    for i in range(size):
        subject = uuid.uuid4()
        events.append(
            StoredEvent(
                subject,
                1,
                "ledger.domain.subject:Subject.Registered",
                secrets.token_bytes(STATE_BYTES),
            )
        )
        keys.append(WrappedKey(subject, "acme", "kek-1", secrets.token_bytes(60)))
        refs.append(SubjectRef("acme", secrets.token_bytes(32), subject))
        receipts.append(Receipt("acme", f"evt-{uuid.uuid4()}-{i}", subject, 1))
    return events, {"new_keys": keys, "new_refs": refs, "receipts": receipts}


def _round(url: str, recorder: PostgresLedgerRecorder, schema: str) -> str:
    events, rows = batch(EVENTS)
    table = f'"{schema}".ledger_events'
    holder = psycopg.connect(url)
    if HOLD_S:
        holder.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")  # an API command's save, say
    done = threading.Event()
    failure: list[BaseException] = []

    def save() -> None:
        try:
            recorder.insert_events(events, **rows)
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    started = time.monotonic()
    threading.Thread(target=save, daemon=True).start()
    time.sleep(HOLD_S)
    holder.rollback()
    holder.close()
    if done.wait(WAIT_S):
        took = time.monotonic() - started - HOLD_S
        return f"saved ({took * 1000:.0f} ms after the lock was released)" + (
            f", error {failure[0]!r}" if failure else ""
        )
    with psycopg.connect(url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT pid, state, wait_event_type, wait_event, now() - xact_start "
            "FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
        ).fetchone()
        locks = admin.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = to_regclass(%s) "
            "AND mode = 'ExclusiveLock' AND granted",
            [table],
        ).fetchone()
        report = f"STALLED {WAIT_S:.0f} s: backend {row}, EXCLUSIVE lock held: {locks}"
        if row is None:
            return report
        admin.execute("SELECT pg_cancel_backend(%s)", [row[0]])
        if done.wait(5):
            return report + "; pg_cancel_backend ended it"
        admin.execute("SELECT pg_terminate_backend(%s)", [row[0]])
        ended = done.wait(5)
        alive = admin.execute(
            "SELECT state, wait_event FROM pg_stat_activity WHERE pid = %s", [row[0]]
        ).fetchone()
        report += f" [after terminate the backend is {alive or 'gone'}]"
        return report + (
            f"; pg_cancel_backend did nothing; pg_terminate_backend ended it "
            f"({failure[0].__class__.__name__ if failure else 'no error'})"
            if ended
            else "; not even pg_terminate_backend ended it: " + _stacks()
        )


def _stacks() -> str:
    import traceback

    frames = sys._current_frames()
    return "\n".join(
        "".join(traceback.format_stack(frames[t.ident])[-12:])
        for t in threading.enumerate()
        if t.ident in frames and t is not threading.current_thread()
    )


def main() -> None:
    global HOLD_S, EVENTS
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    HOLD_S = float(os.environ.get("STALL_HOLD_S", HOLD_S))
    EVENTS = int(os.environ.get("STALL_EVENTS", EVENTS))
    url = os.environ.get("LEDGER_TEST_DATABASE_URL")
    server = None
    if not url:
        server = EmbeddedPostgres(Path(tempfile.mkdtemp()) / "data")
        url = server.start()
    schema = f"stall_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    datastore = _datastore(url, schema)
    recorder = PostgresLedgerRecorder(datastore, events_table_name="ledger_events")
    recorder.create_table()
    stalled = 0
    try:
        for n in range(1, rounds + 1):
            outcome = _round(url, recorder, schema)
            stalled += outcome.startswith("STALLED")
            print(f"round {n}: {EVENTS} events: {outcome}", flush=True)
        print(f"{stalled} of {rounds} rounds stalled")
    finally:
        datastore.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
