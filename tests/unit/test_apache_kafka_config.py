"""What the Apache Kafka launcher writes and where it keeps the broker's jars (no I/O)."""

from __future__ import annotations

from pathlib import Path

from ledger.servers.apache_jars import cache_root, kafka_version
from ledger.servers.apache_node import Node, broker_config, new_cluster_id


def _cluster(size: int) -> list[Node]:
    return [
        Node(
            index=i,
            home=Path(f"/k/node-{i}"),
            port=9100 + i,
            controller_port=9200 + i,
            extra_ports={"SECURE": 9300 + i},
        )
        for i in range(size)
    ]


def test_one_node_replicates_internal_topics_once() -> None:
    (node,) = _cluster(1)
    config = broker_config(node, [node], {})
    assert config["offsets.topic.replication.factor"] == "1"
    assert config["transaction.state.log.min.isr"] == "1"
    assert config["controller.quorum.voters"] == "0@127.0.0.1:9200"


def test_three_nodes_replicate_three_times_and_need_two_in_sync() -> None:
    nodes = _cluster(3)
    config = broker_config(nodes[1], nodes, {"SECURE": "SASL_SSL"})
    assert config["node.id"] == "1"
    assert config["process.roles"] == "broker,controller"
    assert config["offsets.topic.replication.factor"] == "3"
    assert config["transaction.state.log.replication.factor"] == "3"
    assert config["transaction.state.log.min.isr"] == "2"
    assert config["controller.quorum.voters"] == (
        "0@127.0.0.1:9200,1@127.0.0.1:9201,2@127.0.0.1:9202"
    )
    assert config["advertised.listeners"] == ("PLAINTEXT://127.0.0.1:9101,SECURE://127.0.0.1:9301")
    assert "SECURE:SASL_SSL" in config["listener.security.protocol.map"].split(",")


def test_the_ledger_creates_its_topics_and_groups_start_at_once() -> None:
    (node,) = _cluster(1)
    config = broker_config(node, [node], {})
    assert config["auto.create.topics.enable"] == "false"
    assert config["group.initial.rebalance.delay.ms"] == "0"


def test_cluster_ids_are_kafka_uuids_never_read_as_options() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_jars_are_cached_outside_the_work_tree_where_asked() -> None:
    assert cache_root({"LEDGER_APACHE_KAFKA_CACHE": "/c"}) == Path("/c")
    assert cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/compliance-ledger")
    assert cache_root({"HOME": "/h"}).name == "compliance-ledger"


def test_the_pom_names_an_apache_kafka_4_release() -> None:
    assert kafka_version().startswith("4.")
