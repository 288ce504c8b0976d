"""The ledger's processes started as a user starts them: ``ledger ingest``, ``ledger relay``,
``ledger dev`` and ``ledger demo``, killed and restarted the hard way."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ledger.client import LedgerClient
from ledger.process.runtime import open_ledger
from ledger.process.settings import DEV_STATE_FILE, load
from ledger.servers.embedded import free_port
from ledger.wire import avro
from tests import builders as b
from tests.conftest import kafka_engine
from tests.kafka_helpers import read_topic, wait_until

SUBJECTS = 1000  # four events each


def ledger_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ledger.cli.main", *args]


class Process:
    """A ``ledger`` subcommand in its own process, its output kept in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None):
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._out
        )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        self._out.close()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._out.close()


@pytest.fixture
def env(settings_environ: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {
        **clean,
        **settings_environ,
        "LEDGER_LOG_FORMAT": "json",
        "LEDGER_INGEST_BATCH_SIZE": "50",
    }


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:  # gracefully first: `ledger dev` must stop what it started
        if process.proc.poll() is None:
            try:
                process.stop(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def count_facts(database_url: str, schema: str) -> tuple[int, int]:
    """(events, distinct event ids) among the subjects' recorded facts."""
    query = sql.SQL(
        "SELECT count(*), count(DISTINCT convert_from(state, 'UTF8')::json->>'event_id') "
        "FROM {}.ledger_events WHERE topic LIKE %s AND topic NOT LIKE %s"
    ).format(sql.Identifier(schema))
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query, ["%Subject.%", "%Registered"]).fetchone()
    assert row is not None
    return row[0], row[1]


def test_killed_ingest_and_relay_lose_and_duplicate_nothing(
    env: dict[str, str], processes: list[Process], tmp_path: Path
) -> None:
    settings = load(env)
    ledger = open_ledger(settings)
    ledger.register_tenant(b.TENANT, "Acme")
    ledger.record([b.define_purpose()])
    key = ledger.ingest_keys.public_key_for(b.TENANT)  # producers seal personal fields
    ledger.close()
    bootstrap, topic = settings.require_kafka(), settings.topics.ingest
    with LedgerClient(bootstrap, producer="crm", topic=topic, ingest_key=key) as c:
        for i in range(SUBJECTS):
            ref = f"user-{i}@example.com"
            for command in (b.grant(ref), b.collect(ref), b.disclose(ref), b.withdraw(ref)):
                c.send_command(command)
    total = SUBJECTS * 4
    database_url, schema = env["LEDGER_DATABASE_URL"], env["LEDGER_DATABASE_SCHEMA"]

    ingest = Process(ledger_command("ingest"), env, tmp_path / "ingest.log")
    relay = Process(ledger_command("relay"), env, tmp_path / "relay.log")
    processes.extend([ingest, relay])
    wait_until(lambda: count_facts(database_url, schema)[0] >= 300, timeout=60, what="progress")
    ingest.kill()
    relay.kill()
    at_kill = count_facts(database_url, schema)[0]
    assert at_kill < total, "the consumer finished before it could be killed mid-stream"

    ingest = Process(ledger_command("ingest"), env, tmp_path / "ingest.log")
    relay = Process(ledger_command("relay"), env, tmp_path / "relay.log")
    processes.extend([ingest, relay])
    wait_until(
        lambda: count_facts(database_url, schema)[0] >= total, timeout=120, what="all recorded"
    )
    time.sleep(1.0)  # any redelivered batch has been processed by now
    assert count_facts(database_url, schema) == (total, total)

    # The relay published every recorded event; duplicates only as repeated sequences.
    # (Notification ids may have gaps: a transaction killed mid-way consumed ids it never used.)
    reader = open_ledger(settings)
    recorded = {n.id for n in reader.store.select_notifications(1, 100_000)}
    reader.close()
    records = read_topic(
        settings.require_kafka(),
        settings.topics.ledger,
        until=lambda r: len({avro.decode(x.value)[1]["sequence"] for x in r}) >= len(recorded),
        timeout=60,
    )
    sequences = {avro.decode(r.value)[1]["sequence"] for r in records}
    assert sequences == recorded
    assert ingest.stop() == 0
    assert relay.stop() == 0
    log = (tmp_path / "ingest.log").read_text()
    assert "user-" not in log and "@example.com" not in log


def _browser_interfaces_answer(demo_output: str, api_port: int) -> None:
    """The demo prints the console and a privacy-center link; `ledger dev` serves both."""
    base = f"http://127.0.0.1:{api_port}"
    assert f"{base}/console/" in demo_output
    link = re.search(
        rf"privacy center  ({re.escape(base)}/privacy/enter\?code=[\w-]+)", demo_output
    )
    assert link, demo_output
    assert "alice" not in link[1]
    connection = http.client.HTTPConnection("127.0.0.1", api_port, timeout=10)
    try:
        connection.request("GET", link[1].removeprefix(base))
        entered = connection.getresponse()
        entered.read()
        assert (entered.status, entered.getheader("location")) == (303, "/privacy/")
        assert "__Host-ledger-privacy=" in (entered.getheader("set-cookie") or "")
        connection.request("GET", "/console/sign-in")
        sign_in = connection.getresponse()
        assert sign_in.status == 200 and b'name="api_key"' in sign_in.read()
        assert "frame-ancestors 'none'" in (sign_in.getheader("content-security-policy") or "")
    finally:
        connection.close()


def test_ledger_dev_runs_the_demo_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, processes: list[Process]
) -> None:
    # The developer's settings stay out; where the Apache Kafka jars are cached stays in.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LEDGER_") or k.startswith("LEDGER_APACHE_KAFKA_")
    }
    env["LEDGER_LOG_FORMAT"] = "json"
    env["LEDGER_CHECKPOINT_EVERY"] = "5"  # the demo's events make a few checkpoints
    port, api_port = free_port(), free_port()
    engine = kafka_engine()  # `ledger dev` on the broker the suite runs on (LEDGER_TEST_KAFKA)
    dev = Process(
        ledger_command(
            "dev", "--kafka", engine, "--kafka-port", str(port), "--api-port", str(api_port)
        ),
        env,
        tmp_path / "dev.log",
        tmp_path,
    )
    processes.append(dev)
    state = tmp_path / ".ledger" / DEV_STATE_FILE
    wait_until(state.exists, timeout=120, what="ledger dev to start")
    assert json.loads(state.read_text())["LEDGER_KAFKA_BOOTSTRAP"] == f"127.0.0.1:{port}"

    for _ in range(2):  # the demo can be run again on the same ledger
        demo = subprocess.run(
            ledger_command("demo", "--wait", "60"),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "required_consent" in demo.stdout and "subject_erased" in demo.stdout
        assert "purpose_not_consent_based" in demo.stdout
        # The same story through the query API that `ledger dev` serves.
        assert "alice, newsletter → allowed (consent_granted)" in demo.stdout
        assert "bob, newsletter → refused (consent_withdrawn)" in demo.stdout
        assert "the erased customer, terms → refused (subject_erased)" in demo.stdout
        assert "objection_absolute" in demo.stdout and "restriction_unknown" in demo.stdout
        assert "newsletter → refused (processing_restricted)" in demo.stdout
        assert "audit trail (kept) → allowed (legal_basis)" in demo.stdout
        assert "resolution_mismatch" in demo.stdout
        assert re.search(r"the register: [1-9]\d* request\(s\) overdue \(ACCESS\)", demo.stdout)
        assert "last 12 months: Cloud Hosting Ltd, Mailer Co" in demo.stdout
        _browser_interfaces_answer(demo.stdout, api_port)

    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/readyz", timeout=10) as ready:
        assert json.loads(ready.read())["ready"] is True

    # The relay signs checkpoints with the development key; the audit holds them.
    assert "LEDGER_CHECKPOINT_KEY" in json.loads((tmp_path / ".ledger/dev-keys.json").read_text())

    def audit() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ledger_command("audit", "verify"),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    wait_until(lambda: ": holds" in audit().stdout, timeout=30, what="a signed checkpoint")
    audited = audit()
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "every checkpoint holds" in audited.stdout and "warning" not in audited.stderr

    # Rebuild a projection beside the live runner, then see every view caught up.
    for args in (("project", "rebuild", "consent"), ("project", "status")):
        done = subprocess.run(
            ledger_command(*args),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "rebuilt records up to event"
        in subprocess.run(
            ledger_command("project", "rebuild", "records"),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )
    status = done.stdout.splitlines()
    assert len(status) == 3 and all("lag 0" in line for line in status), status

    shown = subprocess.run(
        ledger_command("subject", "show", "--tenant", "demo", "--ref", "alice@example.com"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "ConsentGranted" in shown.stdout and "203.0.113.7" not in shown.stdout

    tail = subprocess.run(
        ledger_command("topic", "tail", "ledger", "--limit", "5"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(lines) == 5 and all(line["schema"] == "LedgerRecord" for line in lines)

    assert dev.stop(timeout=60) == 0
    assert not state.exists()
    # Each process's log lines are kept under the data directory, as JSON lines without a
    # personal value, as well as shown on ledger dev's output.
    for name in ("ingest", "relay", "project", "serve", "notify"):
        kept = (tmp_path / ".ledger" / "logs" / f"{name}.log").read_text()
        lines = [json.loads(line) for line in kept.splitlines()]
        assert lines, name
        assert "alice@example.com" not in kept and "203.0.113.7" not in kept
    assert kept.splitlines()[0] in (tmp_path / "dev.log").read_text()
    broker_cmdline = (
        str(tmp_path / ".ledger" / "kafka") if engine == "apache" else f"tcp://127.0.0.1:{port}"
    )
    leftover = subprocess.run(["pgrep", "-f", broker_cmdline], capture_output=True)
    assert leftover.returncode == 1, "the broker outlived ledger dev"
