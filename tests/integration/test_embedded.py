"""The shared fixtures and the embedded servers do what the other tests rely on."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from psycopg import sql

from ledger.kafka.admin import (
    admin_client,
    broker_reachable,
    default_partitions,
    ensure_topics,
    topic_exists,
)
from ledger.kafka.topics import Topics
from ledger.process.settings import Settings
from ledger.servers.embedded import (
    EmbeddedBroker,
    EmbeddedPackageMissing,
    EmbeddedPostgres,
    free_port,
)
from tests.conftest import require_service


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_pg_schema_is_empty_and_usable(database_url: str, pg_schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s",
            (pg_schema,),
        ).fetchone()
        assert tables == (0,)
        table = sql.Identifier(pg_schema, "probe")
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(table))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'hello')").format(table))
        row = conn.execute(sql.SQL("SELECT note FROM {} WHERE id = 1").format(table)).fetchone()
        assert row == ("hello",)


def test_settings_point_at_the_test_resources(
    settings: Settings, pg_schema: str, topics: Topics, kafka_bootstrap: str, tmp_path: Path
) -> None:
    assert settings.database_schema == pg_schema
    assert settings.topics == topics
    assert settings.require_kafka() == kafka_bootstrap
    assert settings.data_dir == tmp_path
    kek, lookup = settings.require_keys()
    assert len(kek) == len(lookup) == 32
    assert kek != lookup


def test_broker_round_trips_a_message_with_headers(kafka_bootstrap: str, topics: Topics) -> None:
    headers = [("event-type", b"ConsentGiven"), ("schema-version", b"1")]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(
            topics.ingest, key=b"subject-1", value=b"payload", headers=headers, partition=0
        ).get(timeout=15)
    finally:
        producer.close(timeout=5)

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        consumer.assign([TopicPartition(topics.ingest, 0)])
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + 15
        while not records and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    assert len(records) == 1
    record = records[0]
    assert (record.key, record.value, record.offset) == (b"subject-1", b"payload", 0)
    assert list(record.headers) == headers


def test_ensure_topics_reports_created_versus_existing(kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    first, second, third = f"{prefix}.a", f"{prefix}.b", f"{prefix}.c"

    assert not topic_exists(kafka_bootstrap, first)
    assert ensure_topics(kafka_bootstrap, {first: 3, second: 1}) == {first, second}
    assert topic_exists(kafka_bootstrap, first)
    assert ensure_topics(kafka_bootstrap, {first: 3, third: 2}) == {third}
    assert ensure_topics(kafka_bootstrap, {first: 3, second: 1, third: 2}) == set()

    with admin_client(kafka_bootstrap) as admin:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics([first, third])}
    assert described == {first: 3, third: 2}


def test_default_partitions() -> None:
    topics = Topics(ingest="i", rejected="r", ledger="l")
    assert default_partitions(topics) == {"i": 3, "r": 1, "l": 3}


def test_embedded_postgres_restart_keeps_data(tmp_path: Path) -> None:
    # Exercises the embedded default itself, so it runs even when LEDGER_TEST_DATABASE_URL is set.
    server = EmbeddedPostgres(tmp_path / "pg")
    try:
        url = server.start()
    except EmbeddedPackageMissing as exc:
        require_service("embedded PostgreSQL", str(exc))
    try:
        assert url.startswith("postgresql://")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (id int PRIMARY KEY)")
            conn.execute("INSERT INTO kept VALUES (42)")
            postmaster = int((tmp_path / "pg" / "postmaster.pid").read_text().split()[0])
        server.stop()
        server.stop()  # idempotent
        assert _wait_gone(postmaster)
        assert not (tmp_path / "pg" / "postmaster.pid").exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()

        url = server.start()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT id FROM kept").fetchall() == [(42,)]
    finally:
        server.stop()
    assert not (tmp_path / "pg" / "postmaster.pid").exists()


def test_embedded_broker_start_stop(tmp_path: Path) -> None:
    # Exercises the embedded default itself, so it runs even when LEDGER_TEST_KAFKA_BOOTSTRAP
    # is set.
    log = tmp_path / "tansu.log"
    try:
        broker = EmbeddedBroker(port=free_port(), log_path=log)
        bootstrap = broker.start()
    except EmbeddedPackageMissing as exc:
        require_service("embedded Kafka broker", str(exc))
    with broker:
        assert broker.bootstrap == bootstrap
        assert broker.start() == bootstrap  # already running: same server
        assert broker_reachable(bootstrap)
        proc = broker._proc
        assert proc is not None
    assert proc.returncode is not None
    assert not broker_reachable(bootstrap, timeout_s=1.0)
    broker.stop()  # idempotent
    assert log.read_text()


def test_require_service_skips_locally_and_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_service("Kafka", "nothing listens")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="nothing listens"):
        require_service("Kafka", "nothing listens")
