"""Fixtures shared by every test tier.

Services come from the environment when it names them (``LEDGER_TEST_DATABASE_URL``,
``LEDGER_TEST_KAFKA_BOOTSTRAP``), else from servers the tests start: an embedded PostgreSQL, and
the broker ``LEDGER_TEST_KAFKA`` names — ``tansu`` (the default: the embedded development
broker) or ``apache`` (Apache Kafka, one node, from ``ledger.servers.apache``). Tests marked
``apache_kafka`` use Apache Kafka whatever ``LEDGER_TEST_KAFKA`` says, through the
``apache_kafka`` (one node) and ``kafka_cluster3`` (three nodes) fixtures. A service that cannot
be had skips the test loudly on a laptop and fails it on CI (``CI=true``).
Each test gets its own database schema, topics, consumer group and keys, so tests never see
each other's data and the developer's own environment never leaks in.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import hypothesis
import psycopg
import pytest
from psycopg import sql

from ledger.kafka.admin import broker_reachable, default_partitions, ensure_topics
from ledger.kafka.topics import Topics
from ledger.process.settings import Settings, load
from ledger.servers.apache import ApacheKafka, ApacheKafkaMissing
from ledger.servers.embedded import EmbeddedBroker, EmbeddedPackageMissing, EmbeddedPostgres

TESTS_DIR = Path(__file__).resolve().parent
_TIER_MARKERS = {"integration": "integration", "e2e": "e2e"}
_APACHE_FIXTURES = {"apache_kafka", "kafka_cluster3"}
KAFKA_ENGINES = ("tansu", "apache")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if _APACHE_FIXTURES & fixtures:
            item.add_marker(pytest.mark.apache_kafka)
        if "kafka_bootstrap" in fixtures:
            item.add_marker(pytest.mark.kafka)
        try:
            tier = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except ValueError:
            continue
        marker = _TIER_MARKERS.get(tier)
        if marker is not None:
            item.add_marker(getattr(pytest.mark, marker))


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


# Property tests (hypothesis, schemathesis): no per-example deadline on shared CPUs; on CI the
# same examples every run, so a red build is reproducible and never a matter of luck.
hypothesis.settings.register_profile("dev", deadline=None)
hypothesis.settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
hypothesis.settings.load_profile("ci" if on_ci() else "dev")


def require_service(what: str, why: str) -> NoReturn:
    """A service a test needs is missing: a failure on CI, a loud skip elsewhere."""
    message = f"{what} unavailable: {why}"
    if on_ci():
        pytest.fail(f"{message} (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(f"!!! NOT TESTED !!! {message} (on CI this fails)")


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL URL: ``LEDGER_TEST_DATABASE_URL`` if set, else an embedded server."""
    configured = os.environ.get("LEDGER_TEST_DATABASE_URL")
    if configured:
        try:
            psycopg.connect(configured, connect_timeout=5).close()
        except psycopg.Error as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            require_service(
                "PostgreSQL", f"LEDGER_TEST_DATABASE_URL does not accept connections: {reason}"
            )
        yield configured
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded-pg") / "data")
    try:
        url = server.start()
    except EmbeddedPackageMissing as exc:
        require_service("PostgreSQL", f"LEDGER_TEST_DATABASE_URL is unset and {exc}")
    try:
        yield url
    finally:
        server.stop()


def kafka_engine() -> str:
    """The broker ``kafka_bootstrap`` starts: ``LEDGER_TEST_KAFKA`` (tansu or apache)."""
    engine = (os.environ.get("LEDGER_TEST_KAFKA") or "tansu").strip().lower()
    if engine not in KAFKA_ENGINES:
        raise pytest.UsageError(
            f"LEDGER_TEST_KAFKA={engine!r}: expected one of {', '.join(KAFKA_ENGINES)}"
        )
    return engine


@pytest.fixture(scope="session")
def kafka_bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Kafka bootstrap list: ``LEDGER_TEST_KAFKA_BOOTSTRAP`` if set, else a broker started
    here — Tansu, or Apache Kafka with ``LEDGER_TEST_KAFKA=apache``."""
    configured = os.environ.get("LEDGER_TEST_KAFKA_BOOTSTRAP")
    if configured:
        if not broker_reachable(configured, timeout_s=10.0):
            require_service(
                "Kafka", f"LEDGER_TEST_KAFKA_BOOTSTRAP={configured} serves no cluster metadata"
            )
        yield configured
        return
    if kafka_engine() == "apache":
        cluster: ApacheKafka = request.getfixturevalue("apache_kafka")
        yield cluster.bootstrap
        return
    broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("embedded-broker") / "tansu.log")
    try:
        bootstrap = broker.start()
    except EmbeddedPackageMissing as exc:
        require_service("Kafka", f"LEDGER_TEST_KAFKA_BOOTSTRAP is unset and {exc}")
    try:
        yield bootstrap
    finally:
        broker.stop()


def _start_apache(nodes: int, home: Path) -> ApacheKafka:
    cluster = ApacheKafka(nodes, data_dir=home)
    try:
        cluster.start()
    except ApacheKafkaMissing as exc:
        require_service("Apache Kafka", str(exc))
    return cluster


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """One Apache Kafka node for the session, shared: a test must not stop or freeze it (use
    ``kafka_cluster3`` for that). Also the broker of ``kafka_bootstrap`` when
    ``LEDGER_TEST_KAFKA=apache``."""
    cluster = _start_apache(1, tmp_path_factory.mktemp("apache-kafka"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def _kafka_cluster3_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    # Per module, not per session: three idle JVMs would slow every later test on two cores,
    # and a start costs about ten seconds.
    cluster = _start_apache(3, tmp_path_factory.mktemp("apache-kafka-3"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kafka_cluster3(_kafka_cluster3_module: ApacheKafka) -> Iterator[ApacheKafka]:
    """Three Apache Kafka nodes (ids 0, 1, 2), shared by the tests of a module: a test may
    kill, stop, freeze or restart nodes; whatever it left down is brought back up after it."""
    cluster = _kafka_cluster3_module
    yield cluster
    cluster.heal()


@contextlib.contextmanager
def own_schema(database_url: str) -> Iterator[str]:
    """A fresh, empty schema ``t_<12 hex>``, dropped with everything in it afterwards —
    and so are the projections' schemas named after it (``t_<12 hex>_<view>``)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            found = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = %s OR nspname LIKE %s",
                [name, name + "\\_%"],
            ).fetchall()
            for (schema,) in found:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_schema(database_url: str) -> Iterator[str]:
    """A schema of the test's own (``own_schema``)."""
    with own_schema(database_url) as name:
        yield name


def new_topics(bootstrap: str) -> Topics:
    """Topic names no other test uses, created on the broker."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    names = Topics(
        ingest=f"{prefix}.ingest",
        rejected=f"{prefix}.ingest.rejected",
        ledger=f"{prefix}.ledger",
    )
    ensure_topics(bootstrap, default_partitions(names))
    return names


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    """Topic names no other test uses, created on the broker."""
    return new_topics(kafka_bootstrap)


def _base_environ(database_url: str, pg_schema: str, data_dir: Path) -> dict[str, str]:
    return {
        "LEDGER_DATABASE_URL": database_url,
        "LEDGER_DATABASE_SCHEMA": pg_schema,
        "LEDGER_KEK": _key(),
        "LEDGER_LOOKUP_KEY": _key(),
        "LEDGER_INGEST_GROUP": f"ingest-{uuid.uuid4().hex[:12]}",
        "LEDGER_DATA_DIR": str(data_dir),
    }


@pytest.fixture
def settings_environ(
    database_url: str, pg_schema: str, kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> dict[str, str]:
    """The complete ``LEDGER_*`` environment behind ``settings`` (for spawning processes)."""
    return {
        **_base_environ(database_url, pg_schema, tmp_path),
        "LEDGER_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LEDGER_TOPIC_INGEST": topics.ingest,
        "LEDGER_TOPIC_REJECTED": topics.rejected,
        "LEDGER_TOPIC_LEDGER": topics.ledger,
    }


@pytest.fixture
def settings(settings_environ: dict[str, str]) -> Settings:
    """Settings for one test: its own schema, topics, consumer group, keys and data dir."""
    return load(settings_environ)


@pytest.fixture
def environ_db_only(database_url: str, pg_schema: str, tmp_path: Path) -> dict[str, str]:
    """The ``LEDGER_*`` environment behind ``settings_db_only`` (for the CLI)."""
    return _base_environ(database_url, pg_schema, tmp_path)


@pytest.fixture
def settings_db_only(environ_db_only: dict[str, str]) -> Settings:
    """Like ``settings`` but without a broker: ``require_kafka()`` raises ConfigError."""
    return load(environ_db_only)
