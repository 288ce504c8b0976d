"""``ledger audit export`` and ``tools/verify_chain.py``: the check an auditor runs alone,
and the API routes that give the checkpoints and the public key."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ledger.application.service import Ledger
from ledger.cli.main import app
from ledger.integrity.checkpoints import CheckpointSigner
from ledger.process.settings import load
from projections.api import access
from projections.api.app import create_app, prepare
from tests.builders import REF, TENANT, collect, erase, grant
from tests.integration.test_audit_tamper import env, ledger

VERIFIER = Path(__file__).resolve().parents[2] / "tools" / "verify_chain.py"
__all__ = ["env", "ledger"]  # fixtures


def cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def standalone(export: Path, public_key: str, *more: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, str(VERIFIER), str(export), "--public-key", public_key, *more],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_the_standalone_verifier_accepts_an_export_and_finds_tampering(
    ledger: Ledger, env: dict[str, str], tmp_path: Path
) -> None:
    cli(env, "audit", "checkpoint")
    ledger.record([collect(REF), erase(REF)])  # shredded after the checkpoint
    cli(env, "audit", "checkpoint")
    export = tmp_path / "ledger.jsonl"
    assert "2 checkpoints" in cli(env, "audit", "export", str(export))
    checkpoints = f"{export}.checkpoints"
    key = base64.b64encode(CheckpointSigner(load(env).checkpoint_key or b"").public_key).decode()

    code, out = standalone(export, key, "--checkpoints", checkpoints)
    assert code == 0, out
    assert out.count("holds") == 2 and "OK" in out
    assert REF not in export.read_text()

    lines = export.read_text().splitlines()
    row = json.loads(lines[6])
    row["state"] = base64.b64encode(base64.b64decode(row["state"]) + b" ").decode()
    lines[6] = json.dumps(row)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    code, out = standalone(tampered, key, "--checkpoints", checkpoints)
    assert code == 1
    assert f"FAILED at position {row['sequence']}: changed" in out
    assert "DOES NOT HOLD" in out

    wrong_key = base64.b64encode(CheckpointSigner(bytes(32)).public_key).decode()
    code, out = standalone(export, wrong_key, "--checkpoints", checkpoints)
    assert code == 1 and "signature does not verify" in out


def test_the_api_serves_checkpoints_to_auditors_and_the_key_to_anyone(
    ledger: Ledger, env: dict[str, str]
) -> None:
    signed = json.loads(cli(env, "audit", "checkpoint"))
    settings = load(env)
    prepare(settings)
    with psycopg.connect(env["LEDGER_DATABASE_URL"], autocommit=True) as conn:
        schema = settings.database_schema
        auditor = access.create_key(conn, schema, TENANT, ["auditor"], "test")[0]
        reader = access.create_key(conn, schema, TENANT, ["reader"], "test")[0]
    with TestClient(create_app(settings), raise_server_exceptions=False) as api:
        answer = api.get("/v1/checkpoints", headers={"Authorization": f"Bearer {auditor}"})
        assert answer.status_code == 200 and answer.json() == [signed]
        refused = api.get("/v1/checkpoints", headers={"Authorization": f"Bearer {reader}"})
        assert refused.status_code == 403
        keys = api.get("/v1/checkpoint-key").json()
    signer = CheckpointSigner(settings.checkpoint_key or b"", settings.log_origin)
    assert keys == [
        {
            "key_id": signed["key_id"],
            "algorithm": "Ed25519",
            "public_key": base64.b64encode(signer.public_key).decode(),
            "vkey": str(signer.notes.vkey),
        }
    ]
    assert signed["note"].startswith(f"{settings.log_origin}\n{signed['tree_size']}\n")
    ledger.record([grant("dave@example.com")])
