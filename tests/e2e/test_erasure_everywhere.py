"""Erasure, end to end: the processes as a user runs them, then every copy of the data searched.

A subject with consents, a collection and disclosures to two recipients is sent through Kafka
(sealed, as producers do) to `ledger ingest`, `relay`, `project`, `serve` and `notify`. A
backup (pg_dump) and dumps of both topics are taken; erasure is requested through the API;
both recipients receive signed webhooks (one fails first and succeeds on the retry). Then the
live database, the pre-erasure backup restored into a fresh database and reconciled, both
topic dumps (before and after), the API's answers, the exports and every process's log are
searched for the subject's personal values — none may be readable — while the non-personal
audit facts must still be there.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
import urllib3
from psycopg import sql
from typer.testing import CliRunner

from ledger.cli.main import app
from ledger.client import LedgerClient
from ledger.domain.values import LegalBasis
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings, load
from ledger.servers.embedded import free_port
from projections.api import access
from tests import builders as b
from tests.e2e.test_processes import Process, ledger_command, processes
from tests.kafka_helpers import read_topic, wait_until
from tests.pg_tools import new_database, pg_tool, run_ledger
from tests.webhook_receivers import Receivers, receivers

__all__ = ["new_database", "processes", "receivers"]  # fixtures

ERIN = "erin.e2e@example.com"
PERSONAL = [
    ERIN,
    "198.51.100.77",
    "Mozilla/5.0 (Erin's laptop)",
    "form 8812 signed by Erin Example",
    "Erin's home address, 4 Elm Road",
    "Erin's file sent to the bank",
    "Erin asked by phone to be forgotten",
    "Erin disputes the address on file",
    "Erin objects to being profiled",
    "Erin's new address, 9 Oak Road",
]
SERVICES = ("ingest", "relay", "project", "serve", "notify")


def readable(blob: bytes) -> list[str]:
    """The personal values found in ``blob`` as text, or as the hex PostgreSQL prints bytea in."""
    return [v for v in PERSONAL if v.encode() in blob or v.encode().hex().encode() in blob]


@pytest.fixture
def env(settings_environ: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {
        **clean,
        **settings_environ,
        "LEDGER_LOG_FORMAT": "json",
        "LEDGER_API_PORT": str(free_port()),
        "LEDGER_NOTIFIER_GROUP": f"{settings_environ['LEDGER_INGEST_GROUP']}-notify",
        "LEDGER_WEBHOOK_RETRY_BASE": "1s",
    }


class Api:
    """The running ``ledger serve``, asked with an admin key of the tenant."""

    def __init__(self, s: Settings) -> None:
        self.url = f"http://127.0.0.1:{s.api_port}"
        with psycopg.connect(s.require_database(), autocommit=True) as conn:
            access.create_table(conn, s.database_schema)
            self.token, _ = access.create_key(conn, s.database_schema, b.TENANT, ["admin"])

    def call(self, method: str, path: str, body: Any = None) -> urllib3.BaseHTTPResponse:
        headers = {"Authorization": f"Bearer {self.token}"}
        return urllib3.request(
            method, self.url + path, json=body, headers=headers, timeout=10, retries=False
        )

    def json(self, method: str, path: str, body: Any = None) -> Any:
        response = self.call(method, path, body)
        assert response.status < 300, (path, response.status, response.data[:300])
        return response.json()


def cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def send_history(s: Settings) -> None:
    """Erin: a consent, a collection (then corrected), disclosures to two recipients, a
    restriction and an objection. Bob: a consent."""
    ledger = open_ledger(s)
    ledger.register_tenant(b.TENANT, "Acme")
    analytics = b.define_purpose("analytics", "", text="", basis=LegalBasis.LEGITIMATE_INTERESTS)
    ledger.record(
        [b.define_purpose(), b.define_purpose("billing", basis=LegalBasis.CONTRACT), analytics]
    )
    key = ledger.ingest_keys.public_key_for(b.TENANT)
    ledger.close()
    _, ip, agent, evidence, description, note, _, dispute, objection, corrected = PERSONAL
    commands = [
        b.grant(ERIN, ip_address=ip, user_agent=agent, evidence=evidence),
        b.collect(ERIN, event_id="erin-collection", description=description),
        b.disclose(ERIN, recipient="Mailer Co", event_id="disclosure-mailer"),
        b.disclose(
            ERIN, "billing", LegalBasis.CONTRACT, "disclosure-bank", recipient="Bank", note=note
        ),
        b.grant("bob@example.org"),
        b.restrict(ERIN, ["analytics"], note=dispute),
        b.object_to(ERIN, "analytics", reason=objection),
        b.rectify(ERIN, "erin-collection", "description", corrected),
    ]
    with LedgerClient(
        s.require_kafka(), producer="crm", topic=s.topics.ingest, ingest_key=key
    ) as c:
        for command in commands:
            c.send_command(b.at(command, datetime.now(UTC)))  # within the one-year log


def recorded(s: Settings) -> int:
    ledger = open_ledger(s)
    try:
        return len(ledger.store.select_notifications(1, 10_000))
    finally:
        ledger.close()


def dump_topic(s: Settings, topic: str, count: int) -> bytes:
    records = read_topic(s.require_kafka(), topic, until=lambda r: len(r) >= count, timeout=60)
    parts = [r.value + (r.key or b"") + b"".join(v for _, v in r.headers) for r in records]
    return b"\n".join(parts)


def pg_dump_text(database_url: str, schema: str) -> bytes:
    tool = pg_tool("pg_dump", database_url)
    return subprocess.run(
        [tool, "-n", f"{schema}*", database_url], capture_output=True, check=True
    ).stdout


def key_rows(database_url: str, schema: str, subject: UUID) -> int:
    with psycopg.connect(database_url) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.subject_keys WHERE subject_id = %s")
        row = conn.execute(query.format(sql.Identifier(schema)), [subject]).fetchone()
    assert row is not None
    return int(row[0])


def test_after_erasure_no_copy_holds_a_readable_personal_value(
    env: dict[str, str],
    processes: list[Process],
    receivers: tuple[Receivers, str],
    new_database: Any,
    tmp_path: Path,
) -> None:
    s = load(env)
    schema, database_url = s.database_schema, s.require_database()
    send_history(s)
    inbox, base = receivers
    for name, path in (("Mailer Co", "mailer"), ("Bank", "bank")):
        inbox.secrets[path] = cli(env, "webhooks", "add", b.TENANT, name, f"{base}/{path}").strip()
    inbox.fail_first.add("mailer")
    processes.extend(
        Process(ledger_command(name), env, tmp_path / f"{name}.log") for name in SERVICES
    )
    api = Api(s)

    def disclosures_visible() -> bool:
        try:
            response = api.call("POST", "/v1/subject/disclosures", {"subject_ref": ERIN})
        except urllib3.exceptions.HTTPError:  # the server is still starting
            return False
        return response.status == 200 and len(response.json()["disclosures"]) == 2

    wait_until(disclosures_visible, timeout=90, what="Erin's disclosures in the API")

    def rights_visible() -> bool:
        state = api.json("POST", "/v1/subject/rights", {"subject_ref": ERIN})
        return len(state["restrictions"]) == len(state["objections"]) == 1

    wait_until(rights_visible, timeout=30, what="Erin's restriction and objection in the API")
    rights = api.call("POST", "/v1/subject/rights", {"subject_ref": ERIN}).data
    assert set(readable(rights)) == {ERIN, *PERSONAL[7:9]}  # opened for the admin key

    def corrected_visible() -> bool:
        found = api.json("POST", "/v1/subject/collections", {"subject_ref": ERIN})
        return [c["description"] for c in found["collections"]] == [PERSONAL[9]]

    wait_until(corrected_visible, timeout=30, what="Erin's corrected address in the API")
    before = api.call("POST", "/v1/subject/consents", {"subject_ref": ERIN}).data
    assert readable(before) == PERSONAL[:4]  # reference, IP, user agent, evidence: readable now
    erin = UUID(json.loads(before)["subject_id"])

    # Copies taken before the erasure: a database backup and both topics.
    backup = tmp_path / "before.dump"
    pg_dump = pg_tool("pg_dump", database_url)
    subprocess.run([pg_dump, "-Fc", "-n", f"{schema}*", "-f", backup, database_url], check=True)
    assert key_rows(database_url, schema, erin) == 1
    ingest_before = dump_topic(s, s.topics.ingest, 8)
    ledger_before = dump_topic(s, s.topics.ledger, recorded(s))

    request = {"subject_ref": ERIN, "reason": PERSONAL[6], "source": "phone"}
    assert api.json("POST", "/v1/subject/erasure", request)["subject_id"] == str(erin)

    def completed() -> bool:
        status = api.json("GET", f"/v1/subjects/{erin}/erasure-status")
        return [r["status"] for r in status["erasure_requests"]] == ["completed"]

    wait_until(completed, timeout=90, what="the erasure workflow to complete")

    # The recipients were told, with valid signatures: of Erin's restriction and correction
    # (GDPR art. 19), then of her erasure. The mailer's first request failed and was retried
    # with the same delivery id.
    told = ["subject.erased", "subject.rectified", "subject.restricted"]

    def types(path: str) -> list[str]:
        return sorted({json.loads(r.body)["type"] for r in inbox.at(path)})

    wait_until(
        lambda: types("mailer") == types("bank") == told and len(inbox.at("mailer")) == 4,
        timeout=60,
        what="every notice delivered to both recipients",
    )
    assert [r.verified for r in inbox.received] == [True] * len(inbox.received)
    assert len(inbox.at("bank")) == 3
    ids = [r.headers["webhook-id"] for r in inbox.at("mailer")]
    assert len(set(ids)) == 3 and ids.count(ids[0]) == 2  # the failed one, sent again
    assert not readable(b"".join(r.body for r in inbox.received))

    # The live database: no personal value in clear, and the subject's key is gone.
    assert key_rows(database_url, schema, erin) == 0
    assert readable(pg_dump_text(database_url, schema)) == []

    # The backup from before, restored into a fresh database: it held the key until reconciled.
    restored_url = new_database()
    pg_restore = pg_tool("pg_restore", database_url)
    subprocess.run([pg_restore, "--no-owner", "-d", restored_url, backup], check=True)
    assert key_rows(restored_url, schema, erin) == 1
    reconciled = run_ledger({**env, "LEDGER_DATABASE_URL": restored_url}, "keys", "reconcile")
    assert reconciled.returncode == 0, reconciled.stderr
    assert key_rows(restored_url, schema, erin) == 0
    assert readable(pg_dump_text(restored_url, schema)) == []

    # Both topics, as dumped before the erasure and as they are now.
    topics = [ingest_before, ledger_before, dump_topic(s, s.topics.ledger, recorded(s))]
    topics.append(dump_topic(s, s.topics.ingest, 8))
    assert [readable(t) for t in topics] == [[], [], [], []]

    # The API's answers and the exports: facts without persons.
    answers = {
        path: api.call("GET", f"/v1/subjects/{erin}/{path}").data
        for path in ("consents", "disclosures", "collections", "erasure-status")
    }
    exports = {
        fmt: api.call("GET", f"/v1/disclosures?format={fmt}").data for fmt in ("csv", "jsonl")
    }
    assert [readable(blob) for blob in (*answers.values(), *exports.values())] == [[]] * 6
    check = api.json("POST", "/v1/purpose-check", {"subject_ref": ERIN, "purpose": "newsletter"})
    assert (check["allowed"], check["reason"]) == (False, "subject_erased")

    # Every process's log.
    for process in processes:
        assert process.stop() == 0
    logs = b"".join(p.log.read_bytes() for p in processes)
    assert readable(logs) == []

    # What stays: the non-personal audit facts.
    consents = api_facts(answers["consents"])
    assert consents["personal_data"] == "erased" and consents["subject_ref"] is None
    newsletter = next(c for c in consents["consents"] if c["purpose"] == "newsletter")
    assert newsletter["state"] == "granted"
    for fmt in ("csv", "jsonl"):
        assert str(erin).encode() in exports[fmt]
        assert b"Mailer Co" in exports[fmt] and b"Bank" in exports[fmt]
    status = api_facts(answers["erasure-status"])
    assert status["key_state"] == "shredded"
    [erasure] = status["erasure_requests"]
    deliveries = {d["recipient"]: (d["status"], d["attempts"]) for d in erasure["deliveries"]}
    failed_first = json.loads(inbox.at("mailer")[0].body)["type"] == "subject.erased"
    mailer_attempts = 2 if failed_first else 1  # the failure hit whichever notice came first
    assert deliveries == {"Mailer Co": ("delivered", mailer_attempts), "Bank": ("delivered", 1)}


def api_facts(blob: bytes) -> Any:
    return json.loads(blob)
