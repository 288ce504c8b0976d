"""Topic configs asked for at creation: the ingest topic's retention and every topic's
``min.insync.replicas``, dropped if the broker refuses them; replication from the cluster's
size unless configured."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import kafka.errors as kafka_errors
import pytest

from ledger.kafka import admin
from ledger.kafka.topics import TopicReplication, Topics
from ledger.process.settings import ConfigError, load


class FakeAdmin:
    def __init__(self, refuse_configs: bool, brokers: int = 1) -> None:
        self.refuse_configs = refuse_configs
        self.brokers = brokers
        self.requests: list[dict[str, Any]] = []

    def list_topics(self) -> list[str]:
        return ["compliance.ingest.rejected"]

    def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"broker_id": i} for i in range(self.brokers)]}

    def create_topics(self, specs: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.requests.append(specs)
        refused = kafka_errors.InvalidConfigurationError.errno
        return {
            "topics": [
                {
                    "name": name,
                    "error_code": refused if self.refuse_configs and "configs" in spec else 0,
                    "error_message": None,
                }
                for name, spec in specs.items()
            ]
        }

    def wait_for_topics(self, names: list[str], timeout_ms: int) -> None:
        pass


@pytest.mark.parametrize("refuse_configs", [False, True])
def test_the_ingest_topic_is_created_with_the_ingest_retention(
    monkeypatch: pytest.MonkeyPatch, refuse_configs: bool
) -> None:
    fake = _fake(monkeypatch, FakeAdmin(refuse_configs))
    topics = Topics()
    configs = admin.ingest_topic_configs(topics, timedelta(days=7))
    assert configs == {topics.ingest: {"retention.ms": str(7 * 24 * 3600 * 1000)}}

    partitions = {topics.ingest: 3, topics.rejected: 1}
    created = admin.ensure_topics("kafka:9092", partitions, configs=configs)

    assert created == {topics.ingest}
    assert fake.requests[0] == {
        topics.ingest: {
            "num_partitions": 3,
            "replication_factor": 1,
            "configs": {**configs[topics.ingest], "min.insync.replicas": "1"},
        }
    }
    if refuse_configs:  # created again with the broker's defaults
        assert fake.requests[1] == {topics.ingest: {"num_partitions": 3, "replication_factor": 1}}
    assert len(fake.requests) == 1 + refuse_configs


def _fake(monkeypatch: pytest.MonkeyPatch, fake: FakeAdmin) -> FakeAdmin:
    @contextlib.contextmanager
    def client(bootstrap: str, *, timeout_s: float, security: object) -> Iterator[FakeAdmin]:
        yield fake

    monkeypatch.setattr(admin, "admin_client", client)
    return fake


@pytest.mark.parametrize(
    ("brokers", "replication", "expected"),
    [
        (1, TopicReplication(), (1, "1")),
        (2, TopicReplication(), (2, "1")),
        (3, TopicReplication(), (3, "2")),
        (5, TopicReplication(), (3, "2")),
        (5, TopicReplication(factor=5, min_insync=3), (5, "3")),
        (3, TopicReplication(factor=2), (2, "1")),
    ],
)
def test_topics_are_replicated_as_the_cluster_allows_or_as_configured(
    monkeypatch: pytest.MonkeyPatch,
    brokers: int,
    replication: TopicReplication,
    expected: tuple[int, str],
) -> None:
    fake = _fake(monkeypatch, FakeAdmin(refuse_configs=False, brokers=brokers))

    admin.ensure_topics("kafka:9092", {"compliance.ledger": 3}, replication=replication)

    (spec,) = fake.requests[0].values()
    assert (spec["replication_factor"], spec["configs"]["min.insync.replicas"]) == expected


def test_more_in_sync_replicas_than_replicas_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake(monkeypatch, FakeAdmin(refuse_configs=False, brokers=3))
    with pytest.raises(ConfigError, match="LEDGER_KAFKA_MIN_INSYNC_REPLICAS=4"):
        admin.ensure_topics(
            "kafka:9092", {"compliance.ledger": 3}, replication=TopicReplication(min_insync=4)
        )


def test_replication_settings_are_read_from_the_environment() -> None:
    assert load({}).kafka_replication == TopicReplication()
    loaded = load({"LEDGER_KAFKA_REPLICATION_FACTOR": "3", "LEDGER_KAFKA_MIN_INSYNC_REPLICAS": "2"})
    assert loaded.kafka_replication == TopicReplication(factor=3, min_insync=2)
    with pytest.raises(ConfigError, match="LEDGER_KAFKA_MIN_INSYNC_REPLICAS"):
        load({"LEDGER_KAFKA_MIN_INSYNC_REPLICAS": "0"})
