"""Fault injection: events keep flowing while the ledger's processes are SIGKILLed at random,
PostgreSQL is restarted and the broker is frozen; afterwards nothing is lost, nothing is
recorded twice, the ledger topic is complete and in chain order, every projection equals a
rebuild and the hash chain verifies (docs/faults.md).

Runs alone with ``pytest -m faults -s`` (``-s`` shows the counts). ``LEDGER_FAULTS_SEED``
replays a run's random choices; ``LEDGER_FAULTS_KILLS`` (default 24, never fewer than 20)
makes a longer run.

This test always starts a PostgreSQL and a broker of its own (embedded): it stops the one and
freezes the other, which it must not do to servers other tests share.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest

from ledger.client import LedgerClient
from ledger.integrity.checkpoints import new_private_key
from ledger.kafka import consumer as kafka_consumer
from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import Settings, load
from ledger.servers.embedded import EmbeddedBroker, EmbeddedPackageMissing, EmbeddedPostgres
from projections.catalog import VIEWS, live_schema, open_view
from projections.runner import ProjectionRunner
from tests import builders as b
from tests.conftest import require_service
from tests.e2e.test_processes import ledger_command
from tests.faults import (
    Ledger,
    Producer,
    Supervised,
    Supervisor,
    TopicCheck,
    summary,
    view_rows,
    wait_for,
)
from tests.kafka_helpers import read_topic

KILLS = max(20, int(os.environ.get("LEDGER_FAULTS_KILLS") or 24))  # never fewer than 20
RATE = 120.0  # events a second from the producer
KILL_GAP_S = (1.0, 4.0)  # random pause before each kill
PG_DOWN_S = 4.0
SETTLE_S = 120.0
FREEZE_MARGIN_S = 4.0  # the broker stays frozen this much longer than the session timeout

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300 + 10 * KILLS)]


@pytest.fixture
def embedded_pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg")
    try:
        server.start()
    except EmbeddedPackageMissing as exc:
        require_service("embedded PostgreSQL", str(exc))
    yield server
    server.stop()


@pytest.fixture
def database_url(embedded_pg: EmbeddedPostgres) -> str:
    """Overrides the shared server: this test restarts its PostgreSQL."""
    return embedded_pg.url


@pytest.fixture
def embedded_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    try:
        broker.start()
    except EmbeddedPackageMissing as exc:
        require_service("embedded broker", str(exc))
    yield broker
    os.killpg(broker.pid, signal.SIGCONT)  # never leave it frozen
    broker.stop()


@pytest.fixture
def kafka_bootstrap(embedded_broker: EmbeddedBroker) -> str:
    """Overrides the shared broker: this test freezes its broker."""
    return embedded_broker.bootstrap


@pytest.fixture
def fault_env(settings_environ: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {
        **clean,
        **settings_environ,
        "LEDGER_LOG_FORMAT": "json",
        "LEDGER_INGEST_BATCH_SIZE": "100",
        "LEDGER_CHECKPOINT_KEY": base64.b64encode(new_private_key()).decode(),
        "LEDGER_CHECKPOINT_EVERY": "1000",
    }


def test_faults_lose_duplicate_and_reorder_nothing(
    fault_env: dict[str, str],
    embedded_pg: EmbeddedPostgres,
    embedded_broker: EmbeddedBroker,
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("LEDGER_FAULTS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nfaults: seed {seed} (LEDGER_FAULTS_SEED={seed} replays the choices), {KILLS} kills")
    rng, started = random.Random(seed), time.monotonic()
    settings = load(fault_env)
    db = Ledger(
        settings.require_database(), settings.database_schema, f"relay:{settings.topics.ledger}"
    )
    key = _prepare(settings)

    processes = [
        Supervised(kind, args, fault_env, tmp_path / f"{kind}.log")
        for kind, args in (("ingest", ["ingest"]), ("relay", ["relay"]), ("project", ["project"]))
    ]
    timeouts = _consumer_timeouts()
    supervisor = Supervisor(processes, rng)
    ingest = processes[0]
    client = LedgerClient(
        settings.require_kafka(), producer="crm", topic=settings.topics.ingest, ingest_key=key
    )
    producer = Producer(client, b.TENANT, RATE)
    freezes: list[float] = []
    pg_restarts: list[float] = []
    try:
        supervisor.start()
        producer.start()
        supervisor.wait_ready()
        supervisor.kill_at_random(KILLS // 2, KILL_GAP_S)

        supervisor.wait_ready()
        pg_restarts.append(_restart_postgres(embedded_pg, supervisor))
        recovered_pg = _progress_everywhere(db, supervisor, "PostgreSQL restart")
        supervisor.kill_at_random(KILLS - KILLS // 2, KILL_GAP_S)

        supervisor.wait_ready()
        freezes.append(
            _freeze_broker(embedded_broker, supervisor, max(timeouts) / 1000 + FREEZE_MARGIN_S)
        )
        recovered_broker = _progress_everywhere(db, supervisor, "broker freeze")
        producer.stop()
        produced_at = time.monotonic()

        settled = wait_for(
            lambda: _settled(db, producer.event_ids),
            SETTLE_S,
            "every event recorded, published and projected",
            supervisor.pause,
        )
        exits = supervisor.exits()
        stopped = {p.kind: p.stop() for p in processes}
    finally:
        for p in processes:
            if p.process is not None and p.process.proc.poll() is None:
                p.process.kill()
        client.close()

    # Every produced event recorded exactly once, and nothing refused.
    recorded = db.event_ids()
    produced = producer.event_ids
    missing = [i for i in produced if recorded[i] == 0]
    doubled = [i for i in produced if recorded[i] > 1]
    kinds = db.kinds()

    # The ledger topic: every sequence, duplicates only as identical repeats, in chain order.
    notification_ids = db.notification_ids()
    topic = _read_ledger_topic(settings, len(notification_ids))
    topic_problems = topic.problems(notification_ids)

    # Projections equal to views built afresh from the first event.
    differing = _compare_with_rebuild(settings)

    audits = _audits(fault_env)

    counts = {
        "seed": seed,
        "events produced": len(produced),
        "erasures among them": len(producer.erasures),
        "events recorded (distinct producer ids)": len(recorded),
        "ledger events by kind": dict(sorted(kinds.items())),
        "missing": len(missing),
        "recorded twice": len(doubled),
        "rejected": db.rejected(),
        "kills": supervisor.kills(),
        "kills total": sum(supervisor.kills().values()),
        "unexpected exits": len(exits),
        "failures retried in-process (logged)": supervisor.retries(),
        "redelivered to ingest, found duplicate": ingest.logged_sum("batch_recorded", "duplicates"),
        "ingest offset commits refused (rebalance)": ingest.logged("commit_failed"),
        "PostgreSQL restarts (s down)": [round(s, 1) for s in pg_restarts],
        "progress after PostgreSQL restart (s)": round(recovered_pg, 1),
        "broker freezes (s frozen)": [round(s, 1) for s in freezes],
        "ingest consumer session / max poll timeouts (ms)": timeouts,
        "progress after broker freeze (s)": round(recovered_broker, 1),
        "settled after producer stopped (s)": round(settled, 1),
        "ledger head": notification_ids[-1] if notification_ids else 0,
        "topic records": len(topic.records),
        "topic distinct sequences": len(topic.sequences),
        "topic duplicates (relay re-sends)": topic.duplicates,
        "topic problems": topic_problems[:10],
        "views differing from a rebuild": differing,
        "exit codes on SIGINT": stopped,
        "audit verify": _verdict(audits["event store"]),
        "audit verify --topic": _verdict(audits["topic"]),
        "elapsed (s)": round(time.monotonic() - started, 1),
        "producing (s)": round(produced_at - started, 1),
    }
    print("faults:", summary(counts))

    assert not exits, "\n\n".join(exits)
    assert not missing and not doubled, (missing[:10], doubled[:10])
    assert len(recorded) == len(produced) and counts["rejected"] == 0
    assert kinds["KeysShredded"] == len(producer.erasures)
    assert sum(supervisor.kills().values()) == KILLS
    assert not topic_problems, topic_problems
    assert not differing, differing
    assert stopped == {"ingest": 0, "relay": 0, "project": 0}
    for name, done in audits.items():
        assert done.returncode == 0, f"audit of {name}:\n{done.stdout}{done.stderr}"
        assert "every checkpoint holds" in done.stdout, done.stdout


def _read_ledger_topic(settings: Settings, sequences: int) -> TopicCheck:
    """Reads the ledger topic from the start until it holds ``sequences`` distinct ones."""
    topic = TopicCheck()

    def complete(raw: list[object]) -> bool:
        topic.add(raw)
        return len(topic.sequences) >= sequences

    read_topic(settings.require_kafka(), settings.topics.ledger, until=complete, timeout=90)
    return topic


def _audits(env: dict[str, str]) -> dict[str, subprocess.CompletedProcess[str]]:
    """``ledger audit verify`` over the event store, and over the topic."""
    return {
        name: subprocess.run(
            ledger_command("audit", "verify", *args),
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        for name, args in (("event store", []), ("topic", ["--topic"]))
    }


def _prepare(settings: Settings) -> object:
    ledger = open_ledger(settings)
    try:
        ledger.register_tenant(b.TENANT, "Acme")
        ledger.record([b.define_purpose()])
        return ledger.ingest_keys.public_key_for(b.TENANT)
    finally:
        ledger.close()


def _restart_postgres(server: EmbeddedPostgres, supervisor: Supervisor) -> float:
    """Stops PostgreSQL under the running processes and starts it again on the same data."""
    down = time.monotonic()
    server.stop()
    supervisor.pause(PG_DOWN_S)
    server.start()
    return time.monotonic() - down


def _consumer_timeouts() -> list[int]:
    """The session timeout and max poll interval `ledger ingest` consumes with."""
    config: dict[str, Any] = {}
    with mock.patch.object(kafka_consumer, "KafkaConsumer", lambda **kw: config.update(kw)):
        kafka_consumer.make_consumer("127.0.0.1:9092", group="ledger-ingest")
    return [config["session_timeout_ms"], config["max_poll_interval_ms"]]


def _freeze_broker(broker: EmbeddedBroker, supervisor: Supervisor, seconds: float) -> float:
    """SIGSTOPs the broker (the consumer's coordinator too) for ``seconds``, then SIGCONTs it."""
    frozen = time.monotonic()
    os.killpg(broker.pid, signal.SIGSTOP)
    try:
        supervisor.pause(seconds)
    finally:
        os.killpg(broker.pid, signal.SIGCONT)
    return time.monotonic() - frozen


def _progress_everywhere(db: Ledger, supervisor: Supervisor, after: str) -> float:
    """Waits until ingest, relay and every view have moved on, without a restart: the
    processes that lived through the fault retried by themselves."""
    names = list(VIEWS)
    before = (db.head(), db.relay(), db.views(names))

    def moved() -> bool:
        head, relay, views = _positions(db, names)
        return (
            head > before[0] and relay > before[1] and all(views[n] > before[2][n] for n in names)
        )

    took = wait_for(moved, 90, f"progress after the {after}", supervisor.pause)
    assert not supervisor.exits(), "\n\n".join(supervisor.exits())
    return took


def _positions(db: Ledger, names: list[str]) -> tuple[int, int, dict[str, int]]:
    try:
        return db.head(), db.relay(), db.views(names)
    except psycopg.OperationalError:
        return 0, 0, dict.fromkeys(names, 0)


def _settled(db: Ledger, produced: list[str]) -> bool:
    recorded = db.event_ids()
    if any(recorded[i] == 0 for i in produced):
        return False
    head = db.head()
    return db.relay() >= head and all(p >= head for p in db.views(list(VIEWS)).values())


def _compare_with_rebuild(settings: Settings) -> dict[str, list[str]]:
    """Builds every view afresh in a schema of its own and compares every table, row for row."""
    reader = open_reader(settings)
    differing: dict[str, list[str]] = {}
    try:
        head = reader.recorder.max_notification_id() or 0
        for name in VIEWS:
            fresh = f"{settings.database_schema}_fresh_{uuid.uuid4().hex[:6]}"
            view = open_view(settings, name, schema=fresh)
            try:
                runner = ProjectionRunner(reader, view, batch_size=500)
                assert runner.follow(threading.Event(), until=head) == head
            finally:
                view.datastore.close()
            live = view_rows(settings.require_database(), live_schema(settings, name))
            rebuilt = view_rows(settings.require_database(), fresh)
            if live != rebuilt or not any(live.values()):
                differing[name] = [
                    f"{t}: live {len(live.get(t, []))} rows, rebuilt {len(rebuilt.get(t, []))}"
                    for t in sorted(set(live) | set(rebuilt))
                    if live.get(t) != rebuilt.get(t)
                ] or ["empty"]
    finally:
        reader.close()
    return differing


def _verdict(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stdout.strip().splitlines()
    return f"exit {done.returncode}: " + " | ".join(lines[-3:])
