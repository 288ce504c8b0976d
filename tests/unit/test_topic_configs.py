"""The ingest topic's retention: asked for at creation, dropped if the broker refuses it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import kafka.errors as kafka_errors
import pytest

from ledger.kafka import admin
from ledger.settings import Topics


class FakeAdmin:
    def __init__(self, refuse_configs: bool) -> None:
        self.refuse_configs = refuse_configs
        self.requests: list[dict[str, Any]] = []

    def list_topics(self) -> list[str]:
        return ["compliance.ingest.rejected"]

    def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": 1}]}

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
    fake = FakeAdmin(refuse_configs)

    @contextlib.contextmanager
    def client(bootstrap: str, *, timeout_s: float, security: object) -> Iterator[FakeAdmin]:
        yield fake

    monkeypatch.setattr(admin, "admin_client", client)
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
            "configs": configs[topics.ingest],
        }
    }
    if refuse_configs:  # created again with the broker's defaults
        assert fake.requests[1] == {topics.ingest: {"num_partitions": 3, "replication_factor": 1}}
    assert len(fake.requests) == 1 + refuse_configs
