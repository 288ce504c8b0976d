"""Helpers of the failure tests on a three-node Apache Kafka cluster
(``tests/e2e/test_apache_faults.py``): topics that keep two in-sync replicas, the leaders and
in-sync replicas of a topic, and waits that keep supervising the ledger's processes."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from kafka.errors import KafkaError

from ledger.kafka.admin import BrokerUnavailable, admin_client, default_partitions, ensure_topics
from ledger.kafka.topics import Topics
from ledger.servers.apache import ApacheKafka
from tests.faults import Ledger, Supervisor, wait_for

MIN_INSYNC = "2"  # with three replicas and acks=all: one broker may be lost, not two


def durable_topics(bootstrap: str) -> Topics:
    """The ledger's three topics, fresh, replicated three times with ``min.insync.replicas=2``
    (what docs/deploy.md asks of production), created before any process starts."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    names = Topics(
        ingest=f"{prefix}.ingest", rejected=f"{prefix}.ingest.rejected", ledger=f"{prefix}.ledger"
    )
    partitions = default_partitions(names)
    configs = {name: {"min.insync.replicas": MIN_INSYNC} for name in partitions}
    ensure_topics(bootstrap, partitions, configs=configs)
    return names


def partitions(cluster: ApacheKafka, topic: str) -> list[dict[str, Any]]:
    """``describe_topics`` partitions of ``topic``, asked of each running node in turn for up
    to 30 s (a client may still route a request to a node that just died)."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        for node in range(cluster.size):
            if not cluster.running(node):
                continue
            try:
                with admin_client(cluster.node_bootstrap(node), timeout_s=5.0) as admin:
                    return list(admin.describe_topics([topic])[0]["partitions"])
            except (BrokerUnavailable, KafkaError, OSError):  # going away: ask the next one
                continue
        time.sleep(0.2)
    raise AssertionError(f"no node described {topic} within 30 s")


def replicated(cluster: ApacheKafka, topics: list[str]) -> bool:
    """Every partition of ``topics`` has all three replicas in sync again."""
    return all(len(p["isr_nodes"]) == cluster.size for t in topics for p in partitions(cluster, t))


def leaders(cluster: ApacheKafka, topic: str) -> dict[int, int]:
    return {int(p["partition_index"]): int(p["leader_id"]) for p in partitions(cluster, topic)}


def new_leader(
    cluster: ApacheKafka, topic: str, partition: int, old: int, supervisor: Supervisor
) -> float:
    """Waits until a node other than ``old`` leads the partition; returns the seconds."""
    return wait_for(
        lambda: leaders(cluster, topic).get(partition, -1) not in (-1, old),
        60,
        f"a new leader of {topic}/{partition}",
        supervisor.pause,
    )


def progress(db: Ledger, supervisor: Supervisor, events: int, what: str) -> float:
    """Waits until ``events`` more events are recorded and the relay has published past the
    head of the moment; returns the seconds."""
    head = db.head()
    return wait_for(
        lambda: db.head() >= head + events and db.relay() >= head,
        90,
        f"recording and publishing after {what}",
        supervisor.pause,
    )


def exactly_once(db: Ledger, produced: list[str]) -> tuple[list[str], list[str], Counter[str]]:
    """(missing, recorded twice, every recorded id's count)."""
    recorded = db.event_ids()
    missing = [i for i in produced if recorded[i] == 0]
    doubled = [i for i in produced if recorded[i] > 1]
    return missing, doubled, recorded


def settled(db: Ledger, produced: list[str]) -> bool:
    recorded = db.event_ids()
    return all(recorded[i] for i in produced) and db.relay() >= db.head()


def seconds(started: float) -> float:
    return round(time.monotonic() - started, 1)
