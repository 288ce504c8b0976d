"""Topic administration: the one place that creates topics.

Every admin client opened here is closed again, also when the broker cannot be reached
(kafka-python 3.0 would otherwise leave its I/O thread and a socket behind).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaAdminClient

from ledger.kafka.connection import KafkaSecurity, connection_config
from ledger.kafka.topics import TopicReplication, Topics

DEFAULT_PORT = 9092
_CONFIG_REFUSED = (kafka_errors.InvalidConfigurationError, kafka_errors.PolicyViolationError)


class BrokerUnavailable(ConnectionError):
    """No server in a bootstrap list accepts connections; the message names the list."""


def default_partitions(topics: Topics) -> dict[str, int]:
    """Partition counts the ledger's topics are created with."""
    return {topics.ingest: 3, topics.rejected: 1, topics.ledger: 3}


def ingest_topic_configs(topics: Topics, retention: timedelta) -> dict[str, dict[str, str]]:
    """The ingest topic keeps messages exactly as long as a retired ingest key still opens
    them (``LEDGER_INGEST_RETENTION``)."""
    return {topics.ingest: {"retention.ms": str(int(retention.total_seconds() * 1000))}}


def replication_factor(brokers: int) -> int:
    """1 on a single-broker cluster, else as many replicas as brokers, at most 3."""
    return TopicReplication().resolve(brokers)[0]


def ensure_topics(
    bootstrap: str,
    partitions: Mapping[str, int],
    *,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    timeout_s: float = 10.0,
    security: KafkaSecurity | None = None,
    replication: TopicReplication | None = None,
) -> set[str]:
    """Creates the topics in ``partitions`` that do not exist yet; returns the names it created.

    Existing topics are left as they are (their partition count and configs are not changed).
    A topic another process creates at the same moment counts as existing, not as an error.
    A new topic is replicated as ``replication`` says (by default from the cluster's size:
    ``min(3, brokers)`` replicas, ``min.insync.replicas`` 2 where that makes 3, else 1) and
    gets its ``configs`` entry (e.g. ``retention.ms``) besides ``min.insync.replicas``; if the
    broker refuses that configuration, the topic is created with the broker's defaults instead.
    """
    for name, count in partitions.items():
        if count < 1:
            raise ValueError(f"topic {name!r} needs at least one partition, got {count}")
    with admin_client(bootstrap, timeout_s=timeout_s, security=security) as admin:
        existing = set(admin.list_topics())
        missing = {name: count for name, count in partitions.items() if name not in existing}
        if not missing:
            return set()
        brokers = len(admin.describe_cluster()["brokers"])
        factor, min_insync = (replication or TopicReplication()).resolve(brokers)
        wanted = {
            name: {**(configs or {}).get(name, {}), "min.insync.replicas": str(min_insync)}
            for name in missing
        }
        created, refused = _create(admin, missing, factor, wanted, timeout_s)
        if refused:
            created |= _create(admin, refused, factor, {}, timeout_s)[0]
        if created:
            admin.wait_for_topics(sorted(created), timeout_ms=int(timeout_s * 1000))
        return created


def _create(
    admin: Any,
    missing: Mapping[str, int],
    factor: int,
    configs: Mapping[str, Mapping[str, str]],
    timeout_s: float,
) -> tuple[set[str], dict[str, int]]:
    """Topics created, and those whose configs the broker refused (to try without)."""
    specs: dict[str, dict[str, Any]] = {
        name: {"num_partitions": count, "replication_factor": factor}
        for name, count in missing.items()
    }
    for name, config in configs.items():
        if name in specs:
            specs[name]["configs"] = dict(config)
    response = admin.create_topics(specs, timeout_ms=int(timeout_s * 1000), raise_errors=False)
    created: set[str] = set()
    refused: dict[str, int] = {}
    for result in response["topics"]:
        name, error = result["name"], kafka_errors.for_code(result["error_code"])
        if error is kafka_errors.NoError:
            created.add(name)
        elif error in _CONFIG_REFUSED and "configs" in specs[name]:
            refused[name] = missing[name]
        elif error is not kafka_errors.TopicAlreadyExistsError:
            raise error(f"could not create topic {name!r}: {result['error_message']}")
    return created, refused


def topic_exists(
    bootstrap: str, name: str, *, timeout_s: float = 10.0, security: KafkaSecurity | None = None
) -> bool:
    with admin_client(bootstrap, timeout_s=timeout_s, security=security) as admin:
        return name in set(admin.list_topics())


def broker_reachable(
    bootstrap: str, *, timeout_s: float = 2.0, security: KafkaSecurity | None = None
) -> bool:
    """True when a Kafka client can fetch cluster metadata from ``bootstrap`` in time."""
    try:
        with admin_client(bootstrap, timeout_s=timeout_s, security=security) as admin:
            admin.describe_cluster()
    except (BrokerUnavailable, kafka_errors.KafkaError, OSError):
        return False
    return True


@contextlib.contextmanager
def admin_client(
    bootstrap: str, *, timeout_s: float = 10.0, security: KafkaSecurity | None = None
) -> Iterator[Any]:
    """An open ``KafkaAdminClient``, closed on exit.

    Raises :class:`BrokerUnavailable` at once when no bootstrap server accepts a TCP
    connection, instead of letting kafka-python retry until its timeout.
    """
    if not _any_accepts(bootstrap, timeout_s):
        raise BrokerUnavailable(f"no Kafka broker accepts connections at {bootstrap}")
    timeout_ms = max(1, int(timeout_s * 1000))
    config = connection_config(bootstrap, security)
    client = KafkaAdminClient.__new__(KafkaAdminClient)
    try:
        client.__init__(
            **config,
            client_id="ledger-admin",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except BaseException:
        _abandon(client)
        raise
    try:
        yield client
    finally:
        client.close()


def _abandon(client: Any) -> None:
    """Releases what a half-constructed KafkaAdminClient already holds."""
    parts = vars(client)
    for name in ("_metrics", "_client"):
        if name in parts:
            with contextlib.suppress(Exception):
                parts[name].close()
    if "_net" in parts:
        with contextlib.suppress(Exception):
            parts["_net"].stop()


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    servers = []
    for entry in bootstrap.split(","):
        entry = entry.strip()
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not port.isdigit():
            host, port = entry, str(DEFAULT_PORT)
        servers.append((host.strip("[]"), int(port)))
    if not servers:
        raise ValueError("empty Kafka bootstrap list")
    return servers


def _any_accepts(bootstrap: str, timeout_s: float) -> bool:
    per_server = max(0.1, min(timeout_s, 2.0))
    for host, port in _servers(bootstrap):
        try:
            with socket.create_connection((host, port), timeout=per_server):
                return True
        except OSError:
            continue
    return False
