"""The ledger on an Apache Kafka listener that takes only TLS and SASL/SCRAM-SHA-512
(``SASL_SSL``), with a CA this test makes: every process (ingest, relay, project, serve,
notify) and the producer client configured with the README's ``LEDGER_KAFKA_*`` variables,
end to end; and a wrong password or an untrusted certificate, which a process waits out with
one clear line per try and growing waits, losing nothing.
Prints its figures (``pytest -m apache_kafka -s``)."""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from kafka.admin import ScramMechanism, UserScramCredentialUpsertion
from typer.testing import CliRunner

from ledger.cli.main import app
from ledger.client import LedgerClient
from ledger.kafka.admin import admin_client, default_partitions, ensure_topics
from ledger.kafka.security import KafkaSecurity
from ledger.kafka.topics import Topics
from ledger.process.settings import load
from ledger.servers.apache import ApacheKafka, ApacheKafkaMissing
from ledger.servers.embedded import free_port
from tests import builders as b
from tests.apache_faults import exactly_once
from tests.conftest import require_service
from tests.e2e.test_erasure_everywhere import Api
from tests.e2e.test_faults import _audits, _prepare, _read_ledger_topic, _verdict
from tests.e2e.test_processes import Process, ledger_command
from tests.faults import Ledger, Producer, Supervised, Supervisor, summary, wait_for
from tests.kafka_tls import LISTENER, Pki, add_scram, broker_properties, client_environ, make_pki
from tests.webhook_receivers import Receivers, receivers

__all__ = ["receivers"]  # fixture
pytestmark = [
    pytest.mark.apache_kafka,
    pytest.mark.e2e,
    pytest.mark.timeout(240),
]

USER, PASSWORD = "ledger", f"pw-{uuid.uuid4().hex}"
LATE_USER, LATE_PASSWORD = "late-ledger", f"pw-{uuid.uuid4().hex}"  # created during a test


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """One node with a ``SASL_SSL`` listener; the user ``ledger`` created at format time."""
    cluster = ApacheKafka(
        1,
        data_dir=tmp_path_factory.mktemp("secure-kafka"),
        listeners={LISTENER: "SASL_SSL"},
        properties=broker_properties(pki),
        format_args=add_scram(USER, PASSWORD),
    )
    try:
        cluster.start()
    except ApacheKafkaMissing as exc:
        require_service("Apache Kafka", str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture
def kafka_bootstrap(secure_kafka: ApacheKafka) -> str:
    return secure_kafka.listener_bootstrap(LISTENER)


@pytest.fixture
def topics(secure_kafka: ApacheKafka) -> Topics:
    """Fresh topic names; the processes create the topics themselves, over SASL_SSL."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    return Topics(
        ingest=f"{prefix}.ingest", rejected=f"{prefix}.ingest.rejected", ledger=f"{prefix}.ledger"
    )


@pytest.fixture
def secure_env(
    settings_environ: dict[str, str],
    pki: Pki,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The processes' environment; the test process's own clients (the producer client, the
    topic reader, the audits) get the same ``LEDGER_KAFKA_*`` variables."""
    security = client_environ(pki, kafka_bootstrap, USER, PASSWORD)
    for name, value in security.items():
        monkeypatch.setenv(name, value)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {
        **clean,
        **settings_environ,
        **security,
        "LEDGER_LOG_FORMAT": "json",
        "LEDGER_API_PORT": str(free_port()),
        "LEDGER_NOTIFIER_GROUP": f"{settings_environ['LEDGER_INGEST_GROUP']}-notify",
        "LEDGER_WEBHOOK_RETRY_BASE": "1s",
    }


def test_every_process_works_over_sasl_ssl(
    secure_env: dict[str, str],
    secure_kafka: ApacheKafka,
    receivers: tuple[Receivers, str],
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    settings = load(secure_env)
    db = Ledger(
        settings.require_database(), settings.database_schema, f"relay:{settings.topics.ledger}"
    )
    key = _prepare(settings)
    inbox, base = receivers
    inbox.secrets["payroll"] = _add_processor(secure_env, f"{base}/payroll")
    names = ("ingest", "relay", "project", "notify", "serve")
    processes = [Supervised(n, [n], secure_env, tmp_path / f"{n}.log") for n in names]
    supervisor = Supervisor(processes[:4], random.Random(0))
    serve = processes[4]
    client = LedgerClient(
        settings.require_kafka(), producer="crm", topic=settings.topics.ingest, ingest_key=key
    )
    producer = Producer(client, b.TENANT, 200.0)
    try:
        supervisor.start()
        producer.start()
        supervisor.wait_ready()
        serve.start()
        time.sleep(5.0)
        producer.stop()
        wait_for(
            lambda: (
                all(exactly_once(db, producer.event_ids)[2][i] for i in producer.event_ids)
                and db.relay() >= db.head()
            ),
            60,
            "every event recorded and published",
            supervisor.pause,
        )
        erasures = set(producer.erasures)
        wait_for(
            lambda: {_request_id(r.body) for r in inbox.at("payroll")} >= erasures,
            60,
            "every erasure delivered",
            supervisor.pause,
        )
        api = Api(settings)
        ready = wait_for(lambda: _ready(api), 60, "serve ready", supervisor.pause)
        answer = api.call("POST", "/v1/subject/consents", {"subject_ref": "user-1@example.com"})
        exits = supervisor.exits()
        stopped = {p.kind: p.stop() for p in processes}
    finally:
        for p in processes:
            if p.process is not None and p.process.proc.poll() is None:
                p.process.kill()
        client.close()
    missing, doubled, _ = exactly_once(db, producer.event_ids)
    notification_ids = db.notification_ids()
    topic = _read_ledger_topic(settings, len(notification_ids))
    problems = topic.problems(notification_ids)
    audits = _audits(secure_env)
    counts = {
        "listener": f"{LISTENER} SASL_SSL, SCRAM-SHA-512, CA made by the test",
        "events produced (LedgerClient over SASL_SSL)": len(producer.event_ids),
        "missing": len(missing),
        "recorded twice": len(doubled),
        "ledger topic records (read over SASL_SSL)": len(topic.records),
        "topic problems": problems[:5],
        "erasures produced / delivered": [len(erasures), len(inbox.at("payroll"))],
        "serve ready after (s)": round(ready, 1),
        "consents answer": answer.status,
        "audit verify --topic": _verdict(audits["topic"]),
        "exit codes": stopped,
        "elapsed (s)": round(time.monotonic() - started, 1),
    }
    print("\napache SASL_SSL end to end:", summary(counts))
    assert not exits, "\n\n".join(exits)
    assert not missing and not doubled
    assert not problems, problems
    assert len(inbox.at("payroll")) == len(erasures) and all(r.verified for r in inbox.received)
    assert answer.status == 200 and b"newsletter" in answer.data
    assert audits["topic"].returncode == 0, audits["topic"].stdout + audits["topic"].stderr
    assert set(stopped.values()) == {0}


def test_a_refused_login_or_certificate_is_one_clear_line_retried_and_loses_nothing(
    secure_env: dict[str, str], secure_kafka: ApacheKafka, pki: Pki, tmp_path: Path
) -> None:
    """Events wait on the ingest topic while ``ledger ingest`` runs with a user the brokers do
    not know yet, and another with a CA that did not sign the broker's certificate: each
    stays up, says why in one line per try, and tries again with growing waits. Once the user
    exists (created through the admin API, as an operator would), the waiting process records
    every event without a restart; the distrusting one stops cleanly on SIGINT."""
    settings = load(secure_env)
    db = Ledger(
        settings.require_database(), settings.database_schema, f"relay:{settings.topics.ledger}"
    )
    key = _prepare(settings)
    ensure_topics(settings.require_kafka(), default_partitions(settings.topics))
    with LedgerClient(
        settings.require_kafka(), producer="crm", topic=settings.topics.ingest, ingest_key=key
    ) as client:
        producer = Producer(client, b.TENANT, 1000.0)
        producer.start()
        time.sleep(1.0)
        producer.stop()
    late = {
        **secure_env,
        "LEDGER_KAFKA_SASL_USERNAME": LATE_USER,
        "LEDGER_KAFKA_SASL_PASSWORD": LATE_PASSWORD,
    }
    untrusted = {**secure_env, "LEDGER_KAFKA_SSL_CAFILE": str(pki.other_ca)}
    waiting = Process(ledger_command("ingest"), late, tmp_path / "ingest-unknown-user.log")
    distrusting = Process(ledger_command("ingest"), untrusted, tmp_path / "ingest-untrusted.log")
    try:
        started = time.monotonic()
        # A try that times out in the handshake on a loaded machine names no cause; wait
        # (bounded) until each process has also logged one that does.
        wait_for(
            lambda: (
                _refused_saying(waiting.log, LOGIN_REFUSED)
                and _refused_saying(distrusting.log, NOT_TRUSTED)
            ),
            120,
            "each process refused twice, once at least naming the cause",
            time.sleep,
        )
        refused_after = round(time.monotonic() - started, 1)
        still_up = (waiting.proc.poll(), distrusting.proc.poll())
        recorded_meanwhile = len(db.event_ids())
        distrusting_code = distrusting.stop(timeout=30)

        with admin_client(secure_kafka.bootstrap, security=KafkaSecurity()) as admin:
            admin.alter_user_scram_credentials(  # over the PLAINTEXT listener
                [
                    UserScramCredentialUpsertion(
                        LATE_USER, ScramMechanism.SCRAM_SHA_512, LATE_PASSWORD
                    )
                ]
            )
        fixed = time.monotonic()
        took = wait_for(
            lambda: all(db.event_ids()[i] for i in producer.event_ids),
            120,
            "every waiting event recorded once the user exists",
            time.sleep,
        )
        code = waiting.stop(timeout=60)
    finally:
        for process in (waiting, distrusting):
            if process.proc.poll() is None:
                process.kill()
    missing, doubled, _ = exactly_once(db, producer.event_ids)
    login, certificate = _refusals(waiting.log), _refusals(distrusting.log)
    counts = {
        "events waiting on the ingest topic": len(producer.event_ids),
        "two refusals each after (s)": refused_after,
        "unknown user: refusals, waits (s)": (len(login), [r["retry_in_s"] for r in login]),
        "untrusted CA: refusals": len(certificate),
        "recorded before the user existed": recorded_meanwhile,
        "recorded after the user was created (s)": round(took, 1),
        "since the user was created (s)": round(time.monotonic() - fixed, 1),
        "missing": len(missing),
        "recorded twice": len(doubled),
        "exit codes on SIGINT (untrusted, then the waiting one)": (distrusting_code, code),
    }
    print("\napache SASL_SSL refusals:", summary(counts))
    assert still_up == (None, None), "a refused process exited instead of waiting"
    for lines, says in ((login, LOGIN_REFUSED), (certificate, NOT_TRUSTED)):
        assert any(says in r["reason"] for r in lines), lines
        assert all("\n" not in r["reason"] for r in lines), lines
        assert all(PASSWORD not in r["reason"] and LATE_PASSWORD not in r["reason"] for r in lines)
    waits = [r["retry_in_s"] for r in login]
    assert waits == sorted(waits) and waits[0] < waits[-1], waits  # backing off
    assert not _non_json(waiting.log) and not _non_json(distrusting.log)
    assert recorded_meanwhile == 0
    assert not missing and not doubled
    assert (distrusting_code, code) == (0, 0)


LOGIN_REFUSED, NOT_TRUSTED = "refused the SASL login", "not trusted"


def _refused_saying(log: Path, cause: str) -> bool:
    """At least two refusals logged, one of them naming ``cause``."""
    refusals = _refusals(log)
    return len(refusals) >= 2 and any(cause in str(r["reason"]) for r in refusals)


def _refusals(log: Path) -> list[dict[str, object]]:
    """The ``kafka_refused`` lines a process logged."""
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    return [line for line in lines if line.get("event") == "kafka_refused"]


def _non_json(log: Path) -> list[str]:
    """Lines that are not structured logs (a traceback would be)."""
    return [x for x in log.read_text().splitlines() if x.strip() and not x.startswith("{")]


def _add_processor(env: dict[str, str], url: str) -> str:
    done = CliRunner().invoke(
        app, ["webhooks", "add", b.TENANT, "payroll-co", url, "--processor"], env=env
    )
    assert done.exit_code == 0, done.output
    return done.stdout.strip().splitlines()[-1]


def _request_id(body: bytes) -> str:
    return str(json.loads(body)["data"]["request_event_id"])


def _ready(api: Api) -> bool:
    try:
        return urllib3.request("GET", api.url + "/readyz", timeout=5, retries=False).status == 200
    except urllib3.exceptions.HTTPError:
        return False
