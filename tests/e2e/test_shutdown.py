"""SIGTERM in the middle of a batch: the batch finishes and commits, the process exits 0.

A batch is held "in hand" without sleeps or test hooks: the test takes, in a transaction of
its own, the table lock the process needs to commit (the event table for ``ledger ingest``,
the positions table for ``ledger relay``, the view's tracking table for ``ledger project``),
waits until PostgreSQL shows the process waiting for that lock, sends SIGTERM, waits for
the process to log that it heard it, and only then lets the lock go.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from ledger.application.service import Ledger
from ledger.kafka.admin import admin_client
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings, load
from ledger.servers.embedded import free_port
from projections.catalog import live_schema
from tests import builders as b
from tests.e2e.test_processes import Process, count_facts, env, ledger_command, processes
from tests.kafka_helpers import read_topic, wait_until

__all__ = ["env", "processes"]  # fixtures


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines a process wrote (anything else it printed is left out)."""
    events = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def logged(log: Path, event: str) -> bool:
    return any(e.get("event") == event for e in log_events(log))


@pytest.fixture
def ledger(env: dict[str, str]) -> Iterator[Ledger]:
    app = open_ledger(load(env))
    app.register_tenant(b.TENANT, "Acme")
    app.record([b.define_purpose()])
    yield app
    app.close()


class TableLock:
    """A table locked in a transaction of the test's own, and who waits for it."""

    def __init__(self, database_url: str, schema: str, table: str, mode: str) -> None:
        self.url = database_url
        self.name = sql.Identifier(schema, table)
        self.mode = mode
        self.conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> TableLock:
        self.conn = psycopg.connect(self.url)
        self.conn.execute(sql.SQL("LOCK TABLE {} IN " + self.mode + " MODE").format(self.name))
        return self

    def waiters(self) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = to_regclass(%s) AND NOT granted",
                [self.name.as_string(conn)],
            ).fetchone()
        assert row is not None
        return int(row[0])

    def release(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None

    def __exit__(self, *exc: object) -> None:
        self.release()


def terminate_mid_batch(process: Process, lock: TableLock, what: str) -> None:
    """SIGTERM while ``process`` waits for ``lock``; the lock goes once the process has
    noted the signal (its batch is still in hand then)."""
    wait_until(lambda: lock.waiters() > 0, timeout=30, what=f"{what} to wait for the lock")
    process.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: logged(process.log, "shutdown_requested"), timeout=10, what="the signal")
    assert lock.waiters() > 0, f"{what} finished its batch before the signal"
    lock.release()


def exit_code(process: Process, timeout: float = 20) -> int:
    try:
        return process.proc.wait(timeout=timeout)
    finally:
        process._out.close()


def after(events: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    index = next(i for i, e in enumerate(events) if e.get("event") == event)
    return events[index + 1 :]


def committed_offsets(bootstrap: str, group: str, topic: str) -> int:
    with admin_client(bootstrap) as admin:
        offsets = admin.list_group_offsets({group: None})[group]
    return sum(o.offset for tp, o in offsets.items() if tp.topic == topic and o.offset > 0)


def send_grants(env: dict[str, str], ledger: Ledger, refs: list[str]) -> None:
    from ledger.client import LedgerClient

    settings = load(env)
    key = ledger.ingest_keys.public_key_for(b.TENANT)
    bootstrap, topic = settings.require_kafka(), settings.topics.ingest
    with LedgerClient(bootstrap, producer="crm", topic=topic, ingest_key=key) as client:
        for ref in refs:
            client.send_command(b.grant(ref))


def test_sigterm_lets_ingest_commit_its_batch_and_its_offsets(
    env: dict[str, str], ledger: Ledger, processes: list[Process], tmp_path: Path
) -> None:
    settings = load(env)
    database_url, schema = settings.require_database(), settings.database_schema
    first, second = [f"user-{i}@example.com" for i in range(20)], []
    send_grants(env, ledger, first)
    ingest = Process(ledger_command("ingest"), env, tmp_path / "ingest.log")
    processes.append(ingest)
    wait_until(lambda: count_facts(database_url, schema)[0] == 20, timeout=60, what="20 grants")

    with TableLock(database_url, schema, "ledger_events", "EXCLUSIVE") as lock:
        second = [f"late-{i}@example.com" for i in range(100)]
        send_grants(env, ledger, second)
        terminate_mid_batch(ingest, lock, "ingest")
    assert exit_code(ingest) == 0

    # The batch in hand was recorded, and its offsets committed, before the process ended.
    events = log_events(ingest.log)
    last = [e for e in after(events, "shutdown_requested") if e["event"] == "batch_recorded"]
    assert len(last) == 1 and last[0]["recorded"] == last[0]["messages"] > 0
    assert events[-1]["event"] == "ingest_stopped"
    in_ledger = count_facts(database_url, schema)[0]
    assert in_ledger == 20 + last[0]["recorded"]
    group, topic = settings.ingest_group, settings.topics.ingest
    assert committed_offsets(settings.require_kafka(), group, topic) == in_ledger

    # A restart reads only what was not committed: no duplicates, nothing lost.
    again = Process(ledger_command("ingest"), env, tmp_path / "ingest-again.log")
    processes.append(again)
    wait_until(lambda: count_facts(database_url, schema)[0] == 120, timeout=60, what="the rest")
    assert again.stop() == 0
    batches = [e for e in log_events(again.log) if e["event"] == "batch_recorded"]
    assert sum(e["messages"] for e in batches) == 120 - in_ledger
    assert sum(e["duplicates"] for e in batches) == 0
    assert count_facts(database_url, schema) == (120, 120)


def test_a_batch_that_cannot_finish_ends_the_process_after_the_grace_time(
    env: dict[str, str], ledger: Ledger, processes: list[Process], tmp_path: Path
) -> None:
    env = {**env, "LEDGER_SHUTDOWN_GRACE": "2s"}
    settings = load(env)
    database_url, schema = settings.require_database(), settings.database_schema
    send_grants(env, ledger, ["first@example.com"])
    ingest = Process(ledger_command("ingest"), env, tmp_path / "ingest.log")
    processes.append(ingest)
    wait_until(lambda: count_facts(database_url, schema)[0] == 1, timeout=60, what="one grant")

    with TableLock(database_url, schema, "ledger_events", "EXCLUSIVE") as lock:
        send_grants(env, ledger, [f"late-{i}@example.com" for i in range(10)])
        wait_until(lambda: lock.waiters() > 0, timeout=30, what="ingest to wait for the lock")
        ingest.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert exit_code(ingest, timeout=10) == 1  # the lock is still held: it cannot commit
        assert 2 <= time.monotonic() - started < 5
    assert logged(ingest.log, "shutdown_grace_expired")
    # Nothing of the abandoned batch was recorded or committed: a restart reads it again.
    assert count_facts(database_url, schema)[0] == 1
    group, topic = settings.ingest_group, settings.topics.ingest
    assert committed_offsets(settings.require_kafka(), group, topic) == 1


def relay_position(settings: Settings) -> int:
    query = sql.SQL("SELECT position FROM {}.positions WHERE name = %s").format(
        sql.Identifier(settings.database_schema)
    )
    with psycopg.connect(settings.require_database()) as conn:
        row = conn.execute(query, [f"relay:{settings.topics.ledger}"]).fetchone()
    return int(row[0]) if row else 0


def test_sigterm_lets_the_relay_save_the_position_of_what_it_published(
    env: dict[str, str], ledger: Ledger, processes: list[Process], tmp_path: Path
) -> None:
    settings = load(env)
    relay = Process(ledger_command("relay"), env, tmp_path / "relay.log")
    processes.append(relay)
    head = ledger.recorder.max_notification_id()
    wait_until(lambda: relay_position(settings) == head, timeout=60, what="the relay")

    schema = settings.database_schema
    with TableLock(settings.require_database(), schema, "positions", "EXCLUSIVE") as lock:
        ledger.record([b.grant(f"user-{i}@example.com") for i in range(30)])
        terminate_mid_batch(relay, lock, "relay")
    assert exit_code(relay) == 0

    head = ledger.recorder.max_notification_id()
    assert relay_position(settings) == head
    published = after(log_events(relay.log), "shutdown_requested")
    assert [e["event"] for e in published] == ["relay_published", "relay_stopped"]
    assert published[0]["position"] == head
    recorded = {n.id for n in ledger.store.select_notifications(1, 10_000)}
    records = read_topic(
        settings.require_kafka(), settings.topics.ledger, until=lambda r: len(r) >= len(recorded)
    )
    sequences = [int(dict(r.headers)["sequence"]) for r in records]
    assert sorted(sequences) == sorted(recorded)  # each once: nothing to send again


def view_position(settings: Settings, name: str) -> int:
    query = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}.tracking").format(
        sql.Identifier(live_schema(settings, name))
    )
    try:
        with psycopg.connect(settings.require_database()) as conn:
            row = conn.execute(query).fetchone()
    except psycopg.errors.UndefinedTable:  # the process has not created the view yet
        return -1
    assert row is not None
    return int(row[0])


def test_sigterm_lets_a_projection_commit_its_batch(
    env: dict[str, str], ledger: Ledger, processes: list[Process], tmp_path: Path
) -> None:
    settings = load(env)
    project = Process(ledger_command("project", "--only", "consent"), env, tmp_path / "p.log")
    processes.append(project)
    head = ledger.recorder.max_notification_id()
    wait_until(lambda: view_position(settings, "consent") == head, timeout=60, what="the view")

    schema = live_schema(settings, "consent")
    with TableLock(settings.require_database(), schema, "tracking", "EXCLUSIVE") as lock:
        ledger.record([b.grant(f"user-{i}@example.com") for i in range(30)])
        terminate_mid_batch(project, lock, "the projection")
    assert exit_code(project) == 0
    assert view_position(settings, "consent") == ledger.recorder.max_notification_id()
    assert log_events(project.log)[-1]["event"] == "projection_stopped"


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (http only)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_sigterm_makes_the_api_unready_while_it_drains_then_exit_0(
    env: dict[str, str], ledger: Ledger, processes: list[Process], tmp_path: Path
) -> None:
    port = free_port()
    env = {**env, "LEDGER_API_PORT": str(port), "LEDGER_SHUTDOWN_DRAIN": "2s"}
    serve = Process(ledger_command("serve"), env, tmp_path / "serve.log")
    processes.append(serve)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return get(f"{base}/healthz")[0] == 200
        except OSError:
            return False

    wait_until(answers, timeout=60, what="the API to start")
    ledger.record([b.grant(b.REF)])
    wait_until(lambda: get(f"{base}/readyz")[0] == 200, timeout=30, what="ready")  # lag ≤ 1000

    serve.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    wait_until(lambda: get(f"{base}/readyz")[0] == 503, timeout=1, what="unready")
    status, body = get(f"{base}/readyz")
    assert (status, body["ready"], body["stopping"]) == (503, False, True)
    assert get(f"{base}/healthz")[0] == 200  # still serving while the load balancer notices
    assert exit_code(serve) == 0
    assert time.monotonic() - started >= 1.5
    with pytest.raises(OSError):
        get(f"{base}/healthz")
