"""Failures only a real Apache Kafka cluster has, on three nodes (``kafka_cluster3``), while
sealed events flow through the ledger's processes as a user starts them:

- a partition leader SIGKILLed mid-stream (ingest topic, then ledger topic) and restarted;
- a consumer-group rebalance that refuses a frozen ingest process's stale offset commit;
- the relay and the notifier through a frozen leader of the ledger topic.

After each: every produced event recorded exactly once, the ledger topic complete and in chain
order, erasure webhooks delivered once each. Topics are replicated three times with
``min.insync.replicas=2`` and every producer sends with ``acks=all``. Each test prints its
figures (``pytest -m apache_kafka -s``).
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.cli.main import app
from ledger.client import LedgerClient
from ledger.integrity.checkpoints import new_private_key
from ledger.kafka.topics import Topics
from ledger.process.settings import Settings, load
from ledger.servers.apache import ApacheKafka
from tests import builders as b
from tests.apache_faults import (
    MIN_INSYNC,
    durable_topics,
    exactly_once,
    leaders,
    new_leader,
    progress,
    replicated,
    seconds,
    settled,
)
from tests.e2e.test_faults import (
    _audits,
    _consumer_timeouts,
    _prepare,
    _read_ledger_topic,
    _verdict,
)
from tests.faults import WORKING, Ledger, Producer, Supervised, Supervisor, summary, wait_for
from tests.webhook_receivers import Receivers, receivers

__all__ = ["receivers"]  # fixture
pytestmark = [
    pytest.mark.apache_kafka,
    pytest.mark.faults,
    pytest.mark.timeout(300),
]

RATE = 150.0  # events a second
DOWN_S = 6.0  # a killed node stays down this long after a new leader is elected
SETTLE_S = 90.0


@pytest.fixture
def kafka_bootstrap(kafka_cluster3: ApacheKafka) -> str:
    return kafka_cluster3.bootstrap


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    return durable_topics(kafka_bootstrap)


@pytest.fixture
def fault_env(settings_environ: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {
        **clean,
        **settings_environ,
        "LEDGER_LOG_FORMAT": "json",
        "LEDGER_INGEST_BATCH_SIZE": "100",
        "LEDGER_NOTIFIER_GROUP": f"notifier-{settings_environ['LEDGER_INGEST_GROUP']}",
        "LEDGER_WEBHOOK_RETRY_BASE": "1s",
        "LEDGER_WEBHOOK_RETRY_MAX": "2s",
        # Checkpoints on a topic of the test's own: another test's, signed with another
        # key, would not hold under this one.
        "LEDGER_TOPIC_CHECKPOINTS": settings_environ["LEDGER_TOPIC_LEDGER"] + ".checkpoints",
        "LEDGER_CHECKPOINT_KEY": base64.b64encode(new_private_key()).decode(),
        "LEDGER_CHECKPOINT_EVERY": "500",
    }


class Run:
    """The processes of one test under a supervisor, a producer of sealed events, and the
    event store's answers."""

    def __init__(self, env: dict[str, str], tmp_path: Path, names: list[str]):
        self.settings: Settings = load(env)
        s = self.settings
        self.db = Ledger(s.require_database(), s.database_schema, f"relay:{s.topics.ledger}")
        key = _prepare(s)
        self.processes = [
            Supervised(name.split("-")[0], [name.split("-")[0]], env, tmp_path / f"{name}.log")
            for name in names
        ]
        self.supervisor = Supervisor(self.processes, random.Random(0))
        self.client = LedgerClient(
            s.require_kafka(), producer="crm", topic=s.topics.ingest, ingest_key=key
        )
        self.producer = Producer(self.client, b.TENANT, RATE)
        self.started = time.monotonic()

    def start(self) -> None:
        self.supervisor.start()
        self.producer.start()
        self.supervisor.wait_ready()
        wait_for(
            lambda: all(p.ready(WORKING) for p in self.processes) and self.db.relay() > 0,
            90,
            "every process at work",
            self.supervisor.pause,
        )

    def finish(self) -> dict[str, object]:
        """Stops producing, waits until everything is recorded and published, stops the
        processes; returns their exit codes."""
        self.producer.stop()
        took = wait_for(
            lambda: settled(self.db, self.producer.event_ids),
            SETTLE_S,
            "every event recorded and published",
            self.supervisor.pause,
        )
        self.exits = self.supervisor.exits()
        stopped = {p.log.stem: p.stop() for p in self.processes}
        return {"settled after producer stopped (s)": round(took, 1), "exit codes": stopped}

    def close(self) -> None:
        for p in self.processes:
            if p.process is not None and p.process.proc.poll() is None:
                p.process.proc.send_signal(signal.SIGCONT)
                p.process.kill()
        self.client.close()

    def checks(self) -> dict[str, object]:
        """Exactly once in the store; the topic complete and in chain order; audits."""
        missing, doubled, recorded = exactly_once(self.db, self.producer.event_ids)
        notification_ids = self.db.notification_ids()
        topic = _read_ledger_topic(self.settings, len(notification_ids))
        self.missing, self.doubled = missing, doubled
        self.topic_problems = topic.problems(notification_ids)
        self.audits = _audits(self.processes[0].env)
        return {
            "events produced": len(self.producer.event_ids),
            "facts recorded (distinct event ids, the ledger's own included)": len(recorded),
            "missing": len(missing),
            "recorded twice": len(doubled),
            "rejected": self.db.rejected(),
            "ledger head": notification_ids[-1] if notification_ids else 0,
            "topic records": len(topic.records),
            "topic duplicates (relay re-sends)": topic.duplicates,
            "topic problems": self.topic_problems[:10],
            "audit verify --topic": _verdict(self.audits["topic"]),
            "unexpected exits": len(self.exits),
            "elapsed (s)": seconds(self.started),
        }

    def assert_exactly_once(self) -> None:
        assert not self.exits, "\n\n".join(self.exits)
        assert not self.missing and not self.doubled, (self.missing[:10], self.doubled[:10])
        assert self.db.rejected() == 0
        assert not self.topic_problems, self.topic_problems
        for name, done in self.audits.items():
            assert done.returncode == 0, f"audit of {name}:\n{done.stdout}{done.stderr}"

    def logged(self, name: str, event: str) -> int:
        return next(p for p in self.processes if p.log.stem == name).logged(event)


def test_a_killed_partition_leader_loses_and_duplicates_nothing(
    fault_env: dict[str, str], kafka_cluster3: ApacheKafka, topics: Topics, tmp_path: Path
) -> None:
    cluster = kafka_cluster3
    run = Run(fault_env, tmp_path, ["ingest", "relay"])
    faults: list[dict[str, object]] = []
    try:
        run.start()
        for topic in (topics.ingest, topics.ledger):
            faults.append(_kill_leader(cluster, run, topic, 0))
        finished = run.finish()
    finally:
        run.close()
    counts = {
        "brokers / replication / min.insync.replicas": [cluster.size, 3, MIN_INSYNC],
        "faults": faults,
        **run.checks(),
        **finished,
        "ingest batches retried": run.logged("ingest", "batch_will_be_retried"),
        "relay retries": run.logged("relay", "relay_will_retry"),
        "redelivered to ingest, found duplicate": run.processes[0].logged_sum(
            "batch_recorded", "duplicates"
        ),
    }
    print("\napache broker loss:", summary(counts))
    run.assert_exactly_once()
    assert finished["exit codes"] == {"ingest": 0, "relay": 0}


def _kill_leader(cluster: ApacheKafka, run: Run, topic: str, partition: int) -> dict[str, object]:
    """SIGKILLs the leader of ``topic``/``partition`` under load, restarts it once the others
    have moved on, and waits until every replica is in sync again."""
    sup = run.supervisor
    wait_for(lambda: replicated(cluster, [topic]), 60, "all replicas in sync", sup.pause)
    leader = leaders(cluster, topic)[partition]
    head = run.db.head()
    killed = time.monotonic()
    cluster.kill(leader)
    elected = new_leader(cluster, topic, partition, leader, sup)
    moved = progress(run.db, sup, int(RATE), f"killing node {leader}")
    sup.pause(DOWN_S)
    down = time.monotonic()
    cluster.restart(leader)
    restarted = time.monotonic() - down
    in_sync = wait_for(
        lambda: replicated(cluster, [topic]), 60, "the restarted node in sync", sup.pause
    )
    return {
        "killed": f"node {leader}, leader of {topic.split('.', 1)[1]}/{partition}",
        "new leader elected (s)": round(elected, 1),
        "ledger moved on by RATE events and relay past the head (s)": round(moved, 1),
        "events recorded while the node was down": run.db.head() - head,
        "node down (s)": seconds(killed),
        "restart until serving (s)": round(restarted, 1),
        "back in sync (s)": round(in_sync, 1),
    }


FREEZE_ATTEMPTS = 4
FREEZE_MARGIN_S = 4.0


def test_a_rebalance_refuses_a_frozen_consumers_stale_commit(
    fault_env: dict[str, str], kafka_cluster3: ApacheKafka, topics: Topics, tmp_path: Path
) -> None:
    """Two ``ledger ingest`` in one group, batches of 500 under a steady backlog, so a process
    is most of the time between poll and commit. One is frozen (SIGSTOP) past its session
    timeout, the group gives its partitions to the other, and it is thawed: its commit of the
    batch it was handling is refused. Tried up to four times, since a freeze can also land
    between commit and poll (then the thawed process just rejoins)."""
    env = {**fault_env, "LEDGER_INGEST_BATCH_SIZE": "500"}
    run = Run(env, tmp_path, ["ingest-a", "ingest-b", "relay"])
    run.producer.rate = 1200.0
    session_s = _consumer_timeouts()[0] / 1000
    a, other = run.processes[0], run.processes[1]
    tries: list[dict[str, object]] = []
    try:
        run.start()
        while len(tries) < FREEZE_ATTEMPTS and not a.logged("commit_failed"):
            assert a.process is not None
            pid = a.process.proc.pid
            b_batches = other.logged("batch_recorded")
            frozen = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            try:
                run.supervisor.pause(session_s + FREEZE_MARGIN_S)
            finally:
                os.kill(pid, signal.SIGCONT)
            frozen_s = seconds(frozen)
            run.supervisor.pause(5.0)
            # Counted up to 5 s after the thaw: on a loaded machine the group may hand the
            # partitions over only near the end of the freeze.
            took_over = other.logged("batch_recorded") - b_batches
            tries.append(
                {
                    "frozen (s)": frozen_s,
                    "batches the other recorded meanwhile": took_over,
                    "commit refused": a.logged("commit_failed") > 0,
                }
            )
        finished = run.finish()
    finally:
        run.close()
    refused = [json.loads(x) for x in a.log.read_text().splitlines() if '"commit_failed"' in x]
    counts = {
        "consumer session timeout (s)": session_s,
        "freezes": tries,
        "stale commits refused (commit_failed)": [r.get("error") for r in refused],
        **run.checks(),
        **finished,
        "redelivered, found duplicate (a, b)": [
            p.logged_sum("batch_recorded", "duplicates") for p in (a, other)
        ],
    }
    print("\napache rebalance:", summary(counts))
    run.assert_exactly_once()
    assert refused, "the thawed process's stale commit was never refused"
    # The freeze whose stale commit was refused is one the other process took over from.
    assert all(t["batches the other recorded meanwhile"] for t in tries if t["commit refused"])


def test_relay_and_notifier_carry_on_through_a_frozen_ledger_leader(
    fault_env: dict[str, str],
    kafka_cluster3: ApacheKafka,
    topics: Topics,
    receivers: tuple[Receivers, str],
    tmp_path: Path,
) -> None:
    """The node leading the ledger topic's partition 0 is frozen (SIGSTOP) until the cluster
    fences it and elects another, and a while longer; then thawed. The relay keeps
    publishing in chain order, the notifier keeps consuming, and each erasure reaches the
    processor's endpoint once."""
    cluster = kafka_cluster3
    inbox, base = receivers
    run = Run(fault_env, tmp_path, ["ingest", "relay", "notify"])  # registers the tenant
    secret = CliRunner().invoke(
        app,
        ["webhooks", "add", b.TENANT, "payroll-co", f"{base}/payroll", "--processor"],
        env=fault_env,
    )
    assert secret.exit_code == 0, secret.output
    inbox.secrets["payroll"] = secret.stdout.strip().splitlines()[-1]
    try:
        run.start()
        wait_for(lambda: inbox.received, 60, "a first webhook", run.supervisor.pause)
        wait_for(
            lambda: replicated(cluster, [topics.ledger]),
            60,
            "replicas in sync",
            run.supervisor.pause,
        )
        leader = leaders(cluster, topics.ledger)[0]
        before = len(inbox.received)
        frozen = time.monotonic()
        cluster.pause(leader)
        try:
            elected = new_leader(cluster, topics.ledger, 0, leader, run.supervisor)
            moved = progress(run.db, run.supervisor, int(RATE), f"freezing node {leader}")
            during = len(inbox.received) - before
        finally:
            cluster.resume(leader)
        frozen_s = seconds(frozen)
        finished = run.finish()
        erasures = set(run.producer.erasures)
        wait_for(
            lambda: _delivered(inbox) >= erasures,
            60,
            "every erasure delivered",
            run.supervisor.pause,
        )
        time.sleep(2.0)  # a doubled delivery would arrive now
    finally:
        run.close()
    delivered = Counter(_request_ids(inbox))
    counts = {
        "frozen": f"node {leader}, leader of ledger/0",
        "new leader elected (s)": round(elected, 1),
        "ledger moved on and relay past the head (s)": round(moved, 1),
        "webhooks delivered while frozen": during,
        "frozen for (s)": frozen_s,
        **run.checks(),
        **finished,
        "erasures produced": len(erasures),
        "erasures delivered": len(delivered),
        "erasures delivered twice": sum(1 for n in delivered.values() if n > 1),
        "unverified signatures": sum(not r.verified for r in inbox.received),
        "relay retries": run.logged("relay", "relay_will_retry"),
        "notifier batches retried": run.logged("notify", "batch_will_be_retried"),
        "notifier commits refused": run.logged("notify", "commit_failed"),
    }
    print("\napache leader freeze, relay and notifier:", summary(counts))
    run.assert_exactly_once()
    assert set(delivered) == erasures
    assert all(n == 1 for n in delivered.values()), delivered.most_common(3)
    assert all(r.verified for r in inbox.received)


def _request_ids(inbox: Receivers) -> list[str]:
    with inbox.lock:
        bodies = [r.body for r in inbox.received if r.path == "payroll"]
    return [json.loads(body)["data"]["request_event_id"] for body in bodies]


def _delivered(inbox: Receivers) -> set[str]:
    return set(_request_ids(inbox))
