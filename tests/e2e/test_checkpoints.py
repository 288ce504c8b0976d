"""Signed checkpoints from the running relay, checked as an auditor checks them: the
checkpoints and the public key from the running query API, then ``ledger audit verify``.

Only the relay is given the private key: the API serves what the relay stored, and the
auditor's ``ledger audit verify`` is given the public key it fetched.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

import psycopg
import pytest
import urllib3
from psycopg import sql

from ledger.integrity.checkpoints import Checkpoint, CheckpointSigner, verify_signature
from ledger.integrity.notes import VerifierKey, verify_checkpoint
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings, load
from ledger.servers.embedded import free_port
from tests import builders as b
from tests.e2e.test_processes import Process, ledger_command, processes
from tests.kafka_helpers import wait_until
from tests.pg_tools import run_ledger

__all__ = ["processes"]  # fixtures

REFS = [f"cp-{i}@example.com" for i in range(6)]
PRIVATE_KEY = base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def env(settings_environ: dict[str, str]) -> dict[str, str]:
    """Every process's environment; none holds the checkpoint key (see ``relay_env``)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {
        **clean,
        **settings_environ,
        "LEDGER_LOG_FORMAT": "json",
        "LEDGER_API_PORT": str(free_port()),
        "LEDGER_TOPIC_CHECKPOINTS": f"{settings_environ['LEDGER_TOPIC_LEDGER']}.checkpoints",
    }


def relay_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "LEDGER_CHECKPOINT_KEY": PRIVATE_KEY, "LEDGER_CHECKPOINT_EVERY": "5"}


def record(s: Settings, refs: list[str]) -> int:
    """Records a consent for each reference (in one transaction); the last sequence."""
    ledger = open_ledger(s)
    try:
        ledger.record([b.grant(ref) for ref in refs])
        return max(n.id for n in ledger.store.select_notifications(1, 10_000))
    finally:
        ledger.close()


def last_checkpoint(database_url: str, schema: str) -> int:
    query = sql.SQL("SELECT coalesce(max(sequence), 0) FROM {}.checkpoints")
    try:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(query.format(sql.Identifier(schema))).fetchone()
    except psycopg.errors.UndefinedTable:  # the relay has not signed one yet
        return 0
    return int(row[0]) if row else 0


def get(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = urllib3.request("GET", url, headers=headers, timeout=10, retries=False)
    assert response.status == 200, (url, response.status, response.data[:300])
    return response.json()


def api_up(url: str) -> bool:
    try:
        return urllib3.request("GET", f"{url}/healthz", timeout=2, retries=False).status == 200
    except urllib3.exceptions.HTTPError:  # still starting
        return False


def test_the_relay_signs_checkpoints_that_the_api_serves_and_ledger_audit_verify_holds(
    env: dict[str, str], processes: list[Process], tmp_path: Path
) -> None:
    s = load(env)
    assert s.checkpoint_key is None  # only the relay holds it
    database_url, schema = s.require_database(), s.database_schema
    ledger = open_ledger(s)
    ledger.register_tenant(b.TENANT, "Acme")
    ledger.record([b.define_purpose()])
    ledger.close()
    first = record(s, REFS[:3])

    relay = Process(ledger_command("relay"), relay_env(env), tmp_path / "relay.log")
    serve = Process(ledger_command("serve"), env, tmp_path / "serve.log")
    processes.extend([relay, serve])
    wait_until(lambda: last_checkpoint(database_url, schema) == first, timeout=30, what="one")
    second = record(s, REFS[3:])  # more than LEDGER_CHECKPOINT_EVERY events again
    wait_until(lambda: last_checkpoint(database_url, schema) == second, timeout=30, what="two")

    url = f"http://127.0.0.1:{s.api_port}"
    wait_until(lambda: api_up(url), timeout=30, what="the query API")
    token = run_ledger(env, "apikeys", "create", b.TENANT, "--scope", "auditor").stdout.strip()
    signed = [Checkpoint.from_json(c) for c in get(f"{url}/v1/checkpoints", token)]
    [key] = get(f"{url}/v1/checkpoint-key")  # no API key needed
    public_key = base64.b64decode(key["public_key"])
    assert public_key == CheckpointSigner(base64.b64decode(PRIVATE_KEY)).public_key
    assert [c.sequence for c in signed] == [second, first]  # newest first
    assert all(c.key_id == key["key_id"] and verify_signature(c, public_key) for c in signed)
    # the relay integrated what it published: each checkpoint signs the tree there, as a note
    log_key = VerifierKey.parse(key["vkey"])
    for checkpoint in signed:
        assert checkpoint.note is not None
        head = verify_checkpoint(checkpoint.note, [log_key]).head
        assert (head.size, head.root) == (checkpoint.tree_size, checkpoint.root)
    proof = get(f"{url}/v1/proofs/consistency?first={signed[1].tree_size}", token)
    assert (proof["second"], proof["second_checkpoint"]) == (signed[0].tree_size, signed[0].note)

    verified = run_ledger(env, "audit", "verify", "--public-key", key["public_key"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count(": holds") == 2
    assert "OK: the chain verifies and every checkpoint holds" in verified.stdout
    wrong = base64.b64encode(CheckpointSigner(bytes(32)).public_key).decode()
    forged = run_ledger(env, "audit", "verify", "--public-key", wrong)
    assert forged.returncode == 1 and "signature does not verify" in forged.stdout

    assert relay.stop() == 0 and serve.stop() == 0
    logs = relay.log.read_text() + serve.log.read_text()
    assert logs.count('"checkpoint_signed"') == 2
    assert PRIVATE_KEY not in logs + verified.stdout + verified.stderr
    assert not any(ref in logs for ref in REFS)
