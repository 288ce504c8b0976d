"""Issue 19's fault: ``ledger ingest``'s batch stalls mid-transaction with the event table's
lock held, and the ledger recovers within ``LEDGER_WRITE_TIMEOUT`` with every produced event
recorded exactly once.

The ingest process reaches PostgreSQL through a proxy (``tests/stall_proxy.py``) that stops
passing its bytes on in the middle of its first events INSERT: its backend then waits for the
rest of the message, in the transaction, holding the lock. Nothing on the server times that
out soon (no statement runs; the idle-in-transaction timeout is set far off here), so it is
the process's watchdog that must end it; the batch is then run again on a new connection."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from ledger.client import LedgerClient
from ledger.process.runtime import open_ledger
from ledger.process.settings import load
from tests import builders as b
from tests.e2e.test_processes import Process, count_facts, ledger_command
from tests.kafka_helpers import wait_until
from tests.stall_proxy import StallingProxy

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

SUBJECTS = 300  # four events each: the first batch of 500 stalls
WRITE_TIMEOUT_S = 5
MARKER = b"[]) RETURNING notification_id"  # the events INSERT (its text, sent on first use)


def _upstream(database_url: str) -> str | tuple[str, int]:
    params = conninfo_to_dict(database_url)
    host, port = str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


def _through(database_url: str, port: int) -> str:
    params = conninfo_to_dict(database_url)
    user, password = quote(str(params.get("user") or "postgres")), params.get("password")
    auth = f"{user}:{quote(str(password))}" if password else user
    return f"postgresql://{auth}@127.0.0.1:{port}/{params.get('dbname') or 'postgres'}"


def _stalled_backend(database_url: str) -> tuple[str, str | None, str | None] | None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT a.state, a.wait_event, a.application_name FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.mode = 'ExclusiveLock' AND l.granted AND l.locktype = 'relation' "
            "AND a.application_name = 'ledger ingest'"
        ).fetchone()
    return (row[0], row[1], row[2]) if row else None


def test_a_batch_stalled_mid_transaction_is_ended_and_recorded_once(
    settings_environ: dict[str, str], tmp_path: Path
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env = {**clean, **settings_environ, "LEDGER_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    settings = load(env)
    database_url, schema = env["LEDGER_DATABASE_URL"], env["LEDGER_DATABASE_SCHEMA"]
    ledger = open_ledger(settings)
    ledger.register_tenant(b.TENANT, "Acme")
    ledger.record([b.define_purpose()])
    key = ledger.ingest_keys.public_key_for(b.TENANT)
    ledger.close()
    with LedgerClient(
        settings.require_kafka(), producer="crm", topic=settings.topics.ingest, ingest_key=key
    ) as c:
        for i in range(SUBJECTS):
            ref = f"user-{i}@example.com"
            for command in (b.grant(ref), b.collect(ref), b.disclose(ref), b.withdraw(ref)):
                c.send_command(command)
    total = SUBJECTS * 4

    proxy = StallingProxy(_upstream(database_url))
    proxy.arm(MARKER)
    ingest_env = {
        **env,
        "LEDGER_DATABASE_URL": _through(database_url, proxy.port),
        "LEDGER_WRITE_TIMEOUT": f"{WRITE_TIMEOUT_S}s",
        "LEDGER_IDLE_TRANSACTION_TIMEOUT": "600s",  # so the watchdog, not the server, acts
    }
    ingest = Process(ledger_command("ingest"), ingest_env, tmp_path / "ingest.log")
    try:
        assert proxy.fired.wait(90), "the ingest batch never reached the proxy's trap"
        time.sleep(1.0)
        during = _stalled_backend(database_url)
        for _ in range(20):  # a loaded machine may show the session a moment later
            if during is not None:
                break
            time.sleep(0.1)
            during = _stalled_backend(database_url)
        assert count_facts(database_url, schema)[0] == 0  # the stalled batch holds them all
        wait_until(lambda: proxy.server_closed_at > 0, timeout=60, what="stalled session ended")
        ended_after = proxy.server_closed_at - proxy.fired_at
        wait_until(
            lambda: count_facts(database_url, schema)[0] >= total, timeout=120, what="all recorded"
        )
        recovered_after = time.monotonic() - proxy.fired_at
        time.sleep(1.0)  # a redelivered batch would have been recorded by now
        assert count_facts(database_url, schema) == (total, total)
        print(
            f"\nstalled backend {during}; ended {ended_after:.2f} s after the stall "
            f"(LEDGER_WRITE_TIMEOUT {WRITE_TIMEOUT_S} s); all {total} events recorded once "
            f"{recovered_after:.2f} s after the stall"
        )
        assert during is not None and during[1] == "ClientRead", during
        assert ended_after < WRITE_TIMEOUT_S + 5
        assert ingest.stop() == 0
    finally:
        if ingest.proc.poll() is None:
            ingest.kill()
        else:
            ingest.stop()  # closes its log
        proxy.close()
    log = (tmp_path / "ingest.log").read_text()
    assert '"write_stalled"' in log
    assert "user-" not in log and "@example.com" not in log
