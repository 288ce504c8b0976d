"""The Apache Kafka launcher (``ledger.servers.apache``) on real nodes: it serves, it answers what
the development broker answers wrongly, and a three-node cluster lives through losing a node."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from ledger.kafka.admin import admin_client, ensure_topics
from ledger.kafka.consumer import TopicPartition, make_consumer
from ledger.kafka.producer import make_producer
from ledger.servers.apache import ApacheKafka, ApacheKafkaMissing
from tests.conftest import require_service
from tests.kafka_helpers import read_topic, wait_until

pytestmark = pytest.mark.apache_kafka


def _topic() -> str:
    return f"t{uuid.uuid4().hex[:12]}.launcher"


def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = make_producer(bootstrap)
    try:
        for i in range(count):
            producer.send(topic, key=f"k{i % 4}".encode(), value=f"v{i}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close()


def _end_offsets(bootstrap: str, topic: str) -> int:
    consumer = make_consumer(bootstrap, group=None)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return sum(ends.values())
    finally:
        consumer.close()


def test_a_node_serves_records_and_true_end_offsets(apache_kafka: ApacheKafka) -> None:
    bootstrap = apache_kafka.bootstrap
    topic = _topic()
    assert ensure_topics(bootstrap, {topic: 2}) == {topic}

    _produce(bootstrap, topic, 10)

    assert _end_offsets(bootstrap, topic) == 10  # ListOffsets, which Tansu answers wrongly
    records = read_topic(bootstrap, topic, until=lambda got: len(got) >= 10)
    assert sorted(r.value for r in records) == sorted(f"v{i}".encode() for i in range(10))


def test_three_nodes_keep_serving_when_the_leader_dies(kafka_cluster3: ApacheKafka) -> None:
    cluster = kafka_cluster3
    assert cluster.brokers() == {0, 1, 2}
    topic = _topic()
    ensure_topics(cluster.bootstrap, {topic: 1})  # replicated three times on three brokers
    leader = cluster.leader(topic)
    assert leader in {0, 1, 2}

    cluster.kill(leader)

    wait_until(lambda: cluster.leader(topic) not in (None, leader), timeout=60, what="a new leader")
    _produce(cluster.bootstrap, topic, 5)  # acks=all: the two replicas left acknowledge
    records = read_topic(cluster.bootstrap, topic, until=lambda got: len(got) >= 5)
    assert len(records) == 5

    cluster.restart(leader)
    assert cluster.brokers() == {0, 1, 2}


def test_topics_on_three_brokers_keep_three_replicas_and_need_two_in_sync(
    kafka_cluster3: ApacheKafka,
) -> None:
    topic = _topic()
    ensure_topics(kafka_cluster3.bootstrap, {topic: 2})

    with admin_client(kafka_cluster3.bootstrap) as admin:
        (described,) = admin.describe_topics([topic])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    assert all(len(p["replica_nodes"]) == 3 for p in described["partitions"])
    assert configs["topic"][topic]["min.insync.replicas"]["value"] == "2"


def test_a_frozen_node_drops_out_and_returns_when_thawed(kafka_cluster3: ApacheKafka) -> None:
    cluster = kafka_cluster3
    cluster.pause(2)
    wait_until(lambda: 2 not in cluster.brokers(), timeout=90, what="node 2 to be fenced")
    assert cluster.running(2)  # frozen, not dead

    cluster.resume(2)

    wait_until(lambda: cluster.brokers() == {0, 1, 2}, timeout=90, what="node 2 to return")


def test_stop_is_idempotent_and_leaves_nothing_behind() -> None:
    cluster = ApacheKafka(1)
    _start(cluster)
    home, pid = cluster.home, cluster.pid(0)

    cluster.stop()
    cluster.stop()

    assert not home.exists()
    assert not Path(f"/proc/{pid}").exists()


def test_a_data_dir_keeps_records_across_restarts(tmp_path: Path) -> None:
    cluster = ApacheKafka(1, data_dir=tmp_path / "kafka")
    topic = _topic()
    _start(cluster)
    try:
        ensure_topics(cluster.bootstrap, {topic: 1})
        _produce(cluster.bootstrap, topic, 3)
    finally:
        cluster.stop()

    _start(cluster)
    try:
        records = read_topic(cluster.bootstrap, topic, until=lambda got: len(got) >= 3)
        assert [r.value for r in records] == [b"v0", b"v1", b"v2"]
    finally:
        cluster.stop()


def _start(cluster: ApacheKafka) -> None:
    try:
        cluster.start()
    except ApacheKafkaMissing as exc:
        require_service("Apache Kafka", str(exc))
