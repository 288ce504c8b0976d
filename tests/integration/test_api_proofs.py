"""Proofs, receipts and certificates over HTTP, each verified by tools/verify_chain.py alone."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ledger.application.service import Ledger
from ledger.cli.main import app
from ledger.integrity.checkpoints import CheckpointSigner, new_private_key
from ledger.integrity.documents import DocumentSigner
from ledger.process.settings import Settings, load
from projections.api import access
from projections.api.app import create_app, prepare
from tests.builders import REF, TENANT, erase, grant, withdraw
from tests.integration.test_audit_tamper import env, ledger
from tests.ledger_cases import subject_id

VERIFIER = Path(__file__).resolve().parents[2] / "tools" / "verify_chain.py"
__all__ = ["env", "ledger"]  # fixtures


def checkpoint(env: dict[str, str]) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["audit", "checkpoint"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def log_vkey(settings: Settings) -> str:
    return str(CheckpointSigner(settings.checkpoint_key or b"", settings.log_origin).notes.vkey)


def standalone(tmp_path: Path, vkey: str, *args: str) -> tuple[int, str]:
    """The verifier, trusting the log's key and the documents key (the env's fixture sets a
    document key of its own, as production does)."""
    documents = str(DocumentSigner(DOCUMENT_KEY, "compliance-ledger").vkey)
    done = subprocess.run(
        [sys.executable, str(VERIFIER), "--log-key", vkey, "--log-key", documents, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def saved(tmp_path: Path, name: str, body: Any) -> str:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return str(path)


DOCUMENT_KEY = new_private_key()


@pytest.fixture(autouse=True)
def _document_key(env: dict[str, str]) -> None:
    env["LEDGER_DOCUMENT_KEY"] = base64.b64encode(DOCUMENT_KEY).decode()


@pytest.fixture
def api(env: dict[str, str]) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    settings = load(env)
    prepare(settings)
    with psycopg.connect(env["LEDGER_DATABASE_URL"], autocommit=True) as conn:
        schema = settings.database_schema
        keys = {
            scope: access.create_key(conn, schema, TENANT, [scope], "test")[0]
            for scope in ("auditor", "reader", "admin")
        }
        keys["stranger"] = access.create_key(conn, schema, "other", ["auditor"], "test")[0]
    headers = {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, headers


def test_inclusion_and_consistency_proofs_verify_offline(
    ledger: Ledger, env: dict[str, str], api: Any, tmp_path: Path
) -> None:
    client, h = api
    first = checkpoint(env)
    granted = grant("dora@example.com")
    ledger.record([granted])
    second = checkpoint(env)
    vkey = log_vkey(load(env))

    by_id = client.get(
        f"/v1/proofs/inclusion?event_id={granted.envelope.event_id}", headers=h["auditor"]
    )
    assert by_id.status_code == 200, by_id.text
    proof = by_id.json()
    assert proof["tree_size"] == second["tree_size"] and proof["checkpoint"] == second["note"]
    assert proof["event"]["topic"].endswith("ConsentGranted")
    code, out = standalone(tmp_path, vkey, "--proof", saved(tmp_path, "p.json", proof))
    assert code == 0, out
    leaf = {"sequence": proof["sequence"], **proof["event"]}
    code, out = standalone(
        tmp_path,
        vkey,
        "--proof",
        saved(tmp_path, "p.tlog-proof", proof["tlog_proof"]),
        "--leaf-event",
        saved(tmp_path, "leaf.json", leaf),
    )
    assert code == 0, out
    leaf["state"] = leaf["state"][:-4] + "AAA="  # a changed byte
    code, out = standalone(
        tmp_path,
        vkey,
        "--proof",
        saved(tmp_path, "p2.tlog-proof", proof["tlog_proof"]),
        "--leaf-event",
        saved(tmp_path, "leaf2.json", leaf),
    )
    assert code == 1

    within_first = client.get(
        f"/v1/proofs/inclusion?sequence=6&tree_size={first['tree_size']}", headers=h["auditor"]
    ).json()
    assert within_first["checkpoint"] == first["note"]
    assert client.get("/v1/proofs/inclusion?sequence=6", headers=h["stranger"]).status_code == 404
    assert client.get("/v1/proofs/inclusion?sequence=6", headers=h["reader"]).status_code == 403
    assert client.get("/v1/proofs/inclusion", headers=h["auditor"]).status_code == 400

    consistency = client.get(
        f"/v1/proofs/consistency?first={first['tree_size']}", headers=h["auditor"]
    ).json()
    assert consistency["second"] == second["tree_size"]
    assert (consistency["first_checkpoint"], consistency["second_checkpoint"]) == (
        first["note"],
        second["note"],
    )
    code, out = standalone(tmp_path, vkey, "--proof", saved(tmp_path, "c.json", consistency))
    assert code == 0, out


def test_receipts_and_certificates_are_signed_and_verify_offline(
    ledger: Ledger, env: dict[str, str], api: Any, tmp_path: Path
) -> None:
    client, h = api
    ledger.record([withdraw(REF)])
    alice = subject_id(ledger, REF)
    assert alice is not None
    settings = load(env)
    vkey = log_vkey(settings)
    receipt_url = f"/v1/subjects/{alice}/consents/newsletter/receipt"
    published = client.get("/v1/document-key").json()  # no API key needed, like the log's
    assert published["vkey"] == str(DocumentSigner(DOCUMENT_KEY, settings.log_origin).vkey)

    pending = client.get(receipt_url, headers=h["reader"])
    assert pending.status_code == 409 and pending.json()["reason"] == "not_yet_checkpointed"
    assert pending.headers["Retry-After"] == "600"
    checkpoint(env)
    receipt = client.get(receipt_url, headers=h["reader"])
    assert receipt.status_code == 200, receipt.text
    statuses = receipt.json()["document"]["dpv:hasRecordOfActivity"]["dpv:hasConsentStatus"]
    assert [s["@type"] for s in statuses] == ["dpv:ConsentGiven", "dpv:ConsentWithdrawn"]
    code, out = standalone(tmp_path, vkey, "--document", saved(tmp_path, "r.json", receipt.json()))
    assert code == 0, out
    export = client.get(f"/v1/subjects/{alice}/consent-records", headers=h["reader"]).json()
    assert len(export["document"]["dpv:hasRecordOfActivity"]) == 1
    assert client.get(receipt_url, headers=h["stranger"]).status_code == 404

    certificate_url = f"/v1/subjects/{alice}/erasure-certificate"
    early = client.get(certificate_url, headers=h["admin"])
    assert early.status_code == 409 and early.json()["reason"] == "erasure_not_completed"
    ledger.record([erase(REF)])
    delivered = {
        "recipient": "mailer-inc",
        "delivery_id": "d1",
        "status": "delivered",
        "attempts": 1,
        "last_status_code": 204,
    }
    ledger.record_notification(alice, [delivered], datetime.now(UTC))
    checkpoint(env)
    assert client.get(certificate_url, headers=h["reader"]).status_code == 403
    certificate = client.get(certificate_url, headers=h["auditor"])
    assert certificate.status_code == 200, certificate.text
    assert REF not in certificate.text
    code, out = standalone(
        tmp_path, vkey, "--document", saved(tmp_path, "cert.json", certificate.json())
    )
    assert code == 0, out
    pdf = client.get(certificate_url + "?format=pdf", headers=h["admin"])
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    # after the erasure the receipt still verifies: the subject's own copy outlives the key
    code, out = standalone(tmp_path, vkey, "--document", saved(tmp_path, "r2.json", receipt.json()))
    assert code == 0, out


def cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def test_the_cli_gives_the_same_proofs_and_documents(
    ledger: Ledger, env: dict[str, str], tmp_path: Path
) -> None:
    settings = load(env)
    vkey = cli(env, "audit", "key", "--vkey").strip()
    assert vkey == log_vkey(settings)
    documents = cli(env, "audit", "key", "--documents").strip()
    assert documents == str(DocumentSigner(DOCUMENT_KEY, settings.log_origin).vkey) != vkey
    first = checkpoint(env)
    granted = grant("erin@example.com")
    ledger.record([granted])
    assert "no signed checkpoint" in cli(
        env,
        "audit",
        "prove",
        "--event-id",
        granted.envelope.event_id,
        "--tenant",
        TENANT,
        "--tlog",
        code=1,
    )
    checkpoint(env)
    tlog = cli(
        env, "audit", "prove", "--event-id", granted.envelope.event_id, "--tenant", TENANT, "--tlog"
    )
    as_json = json.loads(
        cli(env, "audit", "prove", "--event-id", granted.envelope.event_id, "--tenant", TENANT)
    )
    leaf = {"sequence": as_json["sequence"], **as_json["event"]}
    code, out = standalone(
        tmp_path,
        vkey,
        "--proof",
        saved(tmp_path, "p.tlog-proof", tlog),
        "--leaf-event",
        saved(tmp_path, "leaf.json", leaf),
    )
    assert code == 0, out
    consistency = cli(env, "audit", "consistency", str(first["tree_size"]))
    code, out = standalone(tmp_path, vkey, "--proof", saved(tmp_path, "c.json", consistency))
    assert code == 0, out

    alice = subject_id(ledger, REF)
    assert alice is not None
    receipt = tmp_path / "receipt.json"
    cli(env, "audit", "receipt", TENANT, str(alice), "newsletter", "--out", str(receipt))
    code, out = standalone(tmp_path, vkey, "--document", str(receipt))
    assert code == 0, out
    assert "no erasure request" in cli(env, "audit", "certificate", TENANT, str(alice), code=1)
    ledger.record([erase(REF)])
    ledger.record_notification(alice, [], datetime.now(UTC))
    checkpoint(env)
    pdf = tmp_path / "certificate.pdf"
    certificate = cli(env, "audit", "certificate", TENANT, str(alice), "--pdf", str(pdf))
    assert pdf.read_bytes().startswith(b"%PDF")
    document = json.loads(certificate[certificate.index("{") :])
    code, out = standalone(tmp_path, vkey, "--document", saved(tmp_path, "cert.json", document))
    assert code == 0, out
