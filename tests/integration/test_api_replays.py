"""Replays through the API and the CLI, over the scripted history on a real PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg import sql
from typer.testing import CliRunner

from ledger.application.service import Ledger
from ledger.cli.main import app
from ledger.process.runtime import open_ledger, open_reader
from ledger.process.settings import Settings, load
from tests import builders as b
from tests.history import ALICE, BOB, DAVE, catch_up, ledger, reader, scripted_history, subject_id
from tests.integration.test_api import api, call, history, tokens

__all__ = ["api", "history", "ledger", "reader", "tokens"]  # fixtures


def replay(api: TestClient, token: str, as_of: datetime) -> dict[str, Any]:
    """Asks for a replay and waits until it is built."""
    started = call(api, token, "POST", "/v1/replays", {"as_of": as_of.isoformat()})
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    assert location == f"/v1/replays/{started.json()['replay_id']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body: dict[str, Any] = call(api, token, "GET", location).json()
        if body["status"] not in ("queued", "building"):
            return body
        time.sleep(0.05)
    raise AssertionError("the replay was not built within 60 s")


def test_a_replay_answers_like_the_live_views_and_belongs_to_its_tenant(
    api: TestClient, tokens: dict[str, str], ledger: Ledger, history: dict[str, str]
) -> None:
    auditor = tokens["auditor"]
    built = replay(api, auditor, datetime.now(UTC))
    assert built["status"] == "ready", built
    assert built["verification"]["ok"] is True and built["verification"]["problems"] == 0
    assert built["applied"] == built["head"] == built["cut"] == built["verification"]["up_to"]
    base = f"/v1/replays/{built['replay_id']}"

    alice, dave = subject_id(ledger, ALICE), history["dave"]
    for question in ("consents", "collections", "erasure-status", "rights"):
        live = call(api, auditor, "GET", f"/v1/subjects/{alice}/{question}")
        then = call(api, auditor, "GET", f"{base}/subjects/{alice}/{question}")
        assert then.status_code == 200 and then.json() == live.json(), question
    window = "?since=2025-01-01T00:00:00Z&until=2030-01-01T00:00:00Z"
    live = call(api, auditor, "GET", f"/v1/subjects/{alice}/disclosures{window}").json()
    then = call(api, auditor, "GET", f"{base}/subjects/{alice}/disclosures{window}").json()
    assert then == live and then["disclosures"]
    for ref, purpose in [(ALICE, "newsletter"), (BOB, "newsletter"), (ALICE, "billing")]:
        body = {"subject_ref": ref, "purpose": purpose}
        live = call(api, auditor, "POST", "/v1/purpose-check", body).json()
        assert call(api, auditor, "POST", f"{base}/purpose-check", body).json() == live
        by_id = {"subject_id": str(subject_id(ledger, ref)), "purpose": purpose}
        assert call(api, auditor, "POST", f"{base}/purpose-check", by_id).json() == live
    gone = {"subject_ref": DAVE, "purpose": "newsletter"}
    assert call(api, auditor, "POST", f"{base}/purpose-check", gone).json()["reason"] == (
        "subject_erased"
    )
    by_id = {"subject_id": dave, "purpose": "newsletter"}
    assert call(api, auditor, "POST", f"{base}/purpose-check", by_id).json()["reason"] == (
        "erasure_requested"
    )
    both = {"subject_ref": DAVE, "subject_id": dave, "purpose": "newsletter"}
    assert call(api, auditor, "POST", f"{base}/purpose-check", both).status_code == 422

    as_of = {"as_of": "2026-01-01T00:00:00Z"}
    assert call(api, tokens["reader"], "POST", "/v1/replays", as_of).status_code == 403
    assert call(api, tokens["reader"], "GET", base).status_code == 403
    assert call(api, tokens["globex"], "GET", base).status_code == 404
    assert call(api, tokens["globex"], "GET", f"{base}/subjects/{alice}/consents").status_code == (
        404
    )
    assert call(api, tokens["globex"], "GET", "/v1/replays").json() == []
    assert [r["replay_id"] for r in call(api, auditor, "GET", "/v1/replays").json()] == [
        built["replay_id"]
    ]

    assert call(api, tokens["admin"], "DELETE", base).status_code == 204
    assert call(api, auditor, "GET", base).status_code == 404


def test_a_replay_before_the_history_knows_nobody_and_the_future_is_refused(
    api: TestClient, tokens: dict[str, str], ledger: Ledger, settings_db_only: Settings
) -> None:
    auditor = tokens["auditor"]
    built = replay(api, auditor, datetime(2020, 1, 1, tzinfo=UTC))
    assert (built["status"], built["applied"], built["cut"]) == ("ready", 0, 0)
    alice = subject_id(ledger, ALICE)
    missing = call(
        api, auditor, "GET", f"/v1/replays/{built['replay_id']}/subjects/{alice}/consents"
    )
    assert missing.status_code == 404

    future = datetime.now(UTC) + timedelta(hours=1)
    refused = call(api, auditor, "POST", "/v1/replays", {"as_of": future.isoformat()})
    assert refused.status_code == 400 and "future" in refused.json()["detail"]
    naive = call(api, auditor, "POST", "/v1/replays", {"as_of": "2026-03-01T00:00:00"})
    assert naive.status_code == 422
    # Found by the API fuzz: an instant in year 0 once converted to UTC was a 500.
    year_zero = {"as_of": "0001-01-01T00:01:00.0+01:01"}
    refused = call(api, auditor, "POST", "/v1/replays", year_zero)
    assert refused.status_code == 400 and "year 1" in refused.json()["detail"]

    table = sql.Identifier(settings_db_only.database_schema, "replays")
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (replay_id, requested_by, as_of, status) "
                "VALUES ('inprogress', %s, now(), 'building')"
            ).format(table),
            [b.TENANT],
        )
    busy = call(api, auditor, "GET", f"/v1/replays/inprogress/subjects/{alice}/consents")
    assert busy.status_code == 409 and "building" in busy.json()["detail"]


def test_ledger_replay_prints_the_verification_and_the_answers_then(
    settings_environ: dict[str, str],
) -> None:
    settings = load(settings_environ)
    ledger, reader = open_ledger(settings), open_reader(settings)
    try:
        ledger.register_tenant(b.TENANT, "Acme")
        ledger.register_tenant("globex", "Globex")
        scripted_history(ledger)
        catch_up(settings, reader)
        alice = str(subject_id(ledger, ALICE))
        at = datetime.now(UTC).isoformat()
        runner = CliRunner()
        args = ["replay", "--as-of", at, "--subject", alice, "--purpose", "newsletter", "--drop"]

        result = runner.invoke(app, args, env=settings_environ)

        assert result.exit_code == 0, result.output
        assert "OK: the chain verifies" in result.output
        lines = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
        consents, erasure, decision = lines
        assert consents["subject_id"] == alice and consents["personal_data"] == "withheld"
        assert erasure["key_state"] == "active"
        assert (decision["purpose"], decision["reason"]) == ("newsletter", "consent_granted")
        assert ALICE not in result.output
        assert "dropped replay" in result.output
        assert runner.invoke(app, ["replay", "list"], env=settings_environ).output == ""

        bad = runner.invoke(app, ["replay", "--as-of", "2026-03-01T10:00"], env=settings_environ)
        assert bad.exit_code == 2 and "time zone" in bad.output
    finally:
        ledger.close()
        reader.close()


def test_a_replay_gives_the_restrictions_in_place_at_its_instant(
    api: TestClient, tokens: dict[str, str], ledger: Ledger, history: dict[str, str]
) -> None:
    admin = tokens["admin"]
    restrict = {
        "subject_ref": ALICE,
        "restriction_reference": "dispute-9",
        "grounds": "ACCURACY_CONTESTED",
        "purposes": ["newsletter"],
    }
    assert call(api, admin, "POST", "/v1/subject/restrictions", restrict).status_code == 201
    time.sleep(0.01)
    during = datetime.now(UTC)
    time.sleep(0.01)
    lift = {"subject_ref": ALICE, "restriction_reference": "dispute-9"}
    assert call(api, admin, "POST", "/v1/subject/restrictions/lift", lift).status_code == 200
    alice = subject_id(ledger, ALICE)
    check = {"subject_id": str(alice), "purpose": "newsletter"}
    for as_of, reason, in_place in [
        (during, "processing_restricted", ["dispute-9"]),
        (datetime.now(UTC), "consent_granted", []),
    ]:
        base = f"/v1/replays/{replay(api, admin, as_of)['replay_id']}"
        assert call(api, admin, "POST", f"{base}/purpose-check", check).json()["reason"] == reason
        rights = call(api, admin, "GET", f"{base}/subjects/{alice}/rights").json()
        assert [r["restriction_reference"] for r in rights["restrictions"]] == in_place


def test_a_replay_gives_the_register_as_it_stood_then(
    api: TestClient, tokens: dict[str, str], ledger: Ledger, history: dict[str, str]
) -> None:
    admin = tokens["admin"]
    arrived = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    body = {"subject_ref": ALICE, "kind": "ACCESS", "channel": "email", "received_at": arrived}
    request_id = call(api, admin, "POST", "/v1/subject/requests", body).json()["event_id"]
    time.sleep(0.01)
    before = datetime.now(UTC)
    time.sleep(0.01)
    report = {"subject_ref": ALICE, "format": "json"}
    answer = call(api, admin, "POST", "/v1/subject/report", report).json()["report_id"]
    done = {
        "subject_ref": ALICE,
        "request_id": request_id,
        "outcome": "FULFILLED",
        "resolved_by_event_id": answer,
    }
    assert call(api, admin, "POST", "/v1/subject/requests/complete", done).status_code == 200
    for as_of, status, overdue in [(before, "open", True), (datetime.now(UTC), "fulfilled", False)]:
        base = f"/v1/replays/{replay(api, admin, as_of)['replay_id']}"
        found = call(api, admin, "GET", f"{base}/requests?kind=ACCESS").json()["requests"]
        [entry] = [r for r in found if r["request_id"] == request_id]
        assert (entry["status"], entry["overdue"]) == (status, overdue)
