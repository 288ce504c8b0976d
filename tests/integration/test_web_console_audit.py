"""The console's auditor pages over HTTP: checkpoints verified (and a tampered ledger caught),
replays started from a form and browsed as of their instant, proofs downloaded, and what a
reader key and a forged form are refused."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from ledger.application.service import Ledger, LedgerReader
from ledger.integrity.checkpoint_store import CheckpointTable, make_checkpoint
from ledger.integrity.checkpoints import Checkpoint, CheckpointSigner, new_private_key
from ledger.process.settings import Settings
from ledger.storage import merkle
from tests import builders as b
from tests.history import ALICE, catch_up, ledger, reader, subject_id
from tests.integration.test_api import call, history, tokens
from tests.web_pages import client, csrf, signed_in

__all__ = ["history", "ledger", "reader", "tokens"]  # fixtures


@pytest.fixture
def audited(settings_db_only: Settings) -> Settings:
    """The test's settings with a checkpoint key (documents are signed with it too)."""
    return settings_db_only.with_overrides(checkpoint_key=new_private_key())


@pytest.fixture
def web(audited: Settings, tokens: dict[str, str]) -> Iterator[TestClient]:
    with client(audited) as web:
        yield web


def sign_checkpoint(settings: Settings, ledger: Ledger) -> Checkpoint:
    assert settings.checkpoint_key is not None
    signer = CheckpointSigner(settings.checkpoint_key, settings.log_origin)
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        table = CheckpointTable(conn, settings.database_schema)
        made = make_checkpoint(ledger.store, table, signer, ledger.store.max_notification_id())
    assert made is not None
    return made


def verify_form(web: TestClient, page: str, sequence: int) -> str:
    response = web.post(f"/console/checkpoints/{sequence}/verify", data={"csrf": csrf(page)})
    assert response.status_code == 200, response.text
    section = response.text.split('id="verification"')[1].split("</section>")[0]
    return section


def test_a_checkpoint_is_listed_verified_and_fails_after_tampering(
    web: TestClient, tokens: dict[str, str], ledger: Ledger, audited: Settings
) -> None:
    signed = sign_checkpoint(audited, ledger)
    signed_in(web, tokens["auditor"])
    page = web.get("/console/checkpoints")
    assert page.status_code == 200
    row = page.text.split(f'<tr data-sequence="{signed.sequence}">')[1].split("</tr>")[0]
    root = base64.b64encode(signed.root or b"").decode()
    assert f'title="{root}"' in row and signed.key_id in row
    assert f'action="/console/checkpoints/{signed.sequence}/verify"' in row

    good = verify_form(web, page.text, signed.sequence)
    assert good.startswith(' data-verified="true"')
    for name in ("signature", "note", "events", "consistency", "witnesses"):
        assert f'data-check="{name}" data-ok="true"' in good

    table = sql.Identifier(audited.database_schema, "ledger_events")
    with psycopg.connect(audited.require_database(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET state = state || ' '::bytea WHERE notification_id = %s").format(
                table
            ),
            [signed.sequence],
        )
    bad = verify_form(web, page.text, signed.sequence)
    assert bad.startswith(' data-verified="false"')
    assert 'data-check="events" data-ok="false"' in bad
    assert 'data-check="signature" data-ok="true"' in bad


def test_a_reader_key_is_told_its_scope_does_not_allow_checkpoints(
    web: TestClient, tokens: dict[str, str], ledger: Ledger, audited: Settings
) -> None:
    signed = sign_checkpoint(audited, ledger)
    signed_in(web, tokens["reader"])
    page = web.get("/console/checkpoints")
    assert page.status_code == 403
    assert "scope does not allow" in page.text and 'id="scope-denied"' in page.text
    assert "data-sequence" not in page.text and signed.key_id not in page.text
    verify = web.post(
        f"/console/checkpoints/{signed.sequence}/verify", data={"csrf": csrf(page.text)}
    )
    assert verify.status_code == 403 and 'id="verification"' not in verify.text
    route = f"/v1/checkpoints/{signed.sequence}/verification"
    assert call(web, tokens["reader"], "GET", route).status_code == 403
    answer = call(web, tokens["auditor"], "GET", route).json()
    assert answer["verified"] is True and answer["tree_size"] == signed.tree_size
    names = [c["name"] for c in answer["checks"]]
    assert names == ["signature", "note", "events", "consistency", "witnesses"]
    unknown = f"/v1/checkpoints/{signed.sequence + 1}/verification"
    assert call(web, tokens["auditor"], "GET", unknown).status_code == 404


def _wait_ready(web: TestClient, location: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = web.get(location)
        state = re.search(r'id="replay-state"[^>]*data-state="(\w+)"', page.text)
        assert state, page.text
        if state[1] not in ("queued", "building"):
            assert 'http-equiv="refresh"' not in page.text
            return state[1]
        assert '<meta http-equiv="refresh" content="2">' in page.text
        time.sleep(0.1)
    raise AssertionError("the replay was not built within 30 s")


def test_a_replay_started_from_the_form_answers_as_of_its_instant(
    web: TestClient,
    tokens: dict[str, str],
    ledger: Ledger,
    reader: LedgerReader,
    settings_db_only: Settings,
) -> None:
    time.sleep(1.1)  # the form's instant is to the second: after the history, before the change
    instant = datetime.now(UTC).replace(microsecond=0)
    ledger.record([b.withdraw(ALICE, "newsletter")])
    signed_in(web, tokens["auditor"])
    form = web.get("/console/replays")
    assert 'id="start-replay"' in form.text and 'type="datetime-local"' in form.text

    as_of = instant.strftime("%Y-%m-%dT%H:%M:%S")
    started = web.post(
        "/console/replays", data={"csrf": csrf(form.text), "as_of": as_of}, follow_redirects=False
    )
    assert started.status_code == 303, started.text
    location = started.headers["location"]
    replay_id = location.rsplit("/", 1)[1]
    listed = call(web, tokens["auditor"], "GET", "/v1/replays").json()
    assert [r["replay_id"] for r in listed] == [replay_id]
    assert datetime.fromisoformat(listed[0]["as_of"]) == instant

    assert _wait_ready(web, location) == "ready"
    alice = subject_id(ledger, ALICE)
    page = web.get(location, params={"subject_id": str(alice), "purpose": "newsletter"}).text
    assert '<tr data-purpose="newsletter" data-state="granted">' in page
    assert 'data-allowed="true" data-reason="consent_granted"' in page
    catch_up(settings_db_only, reader)
    live = call(web, tokens["auditor"], "GET", f"/v1/subjects/{alice}/consents").json()
    assert {c["purpose"]: c["state"] for c in live["consents"]}["newsletter"] == "withdrawn"

    dropped = web.post(f"{location}/drop", data={"csrf": csrf(page)}, follow_redirects=False)
    assert dropped.status_code == 303
    assert call(web, tokens["auditor"], "GET", "/v1/replays").json() == []


def test_an_inclusion_proof_downloads_as_json_that_verifies(
    web: TestClient, tokens: dict[str, str], ledger: Ledger, audited: Settings, history: Any
) -> None:
    signed = sign_checkpoint(audited, ledger)
    signed_in(web, tokens["auditor"])
    page = web.get("/console/proofs").text
    assert 'id="download-inclusion"' in page and 'id="download-certificate"' in page
    response = web.post(
        "/console/proofs/inclusion", data={"csrf": csrf(page), "event_id": history["regrant"]}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith("attachment;")
    proof = response.json()
    event = proof["event"]
    leaf = merkle.leaf(
        proof["sequence"],
        event["originator_id"],
        event["originator_version"],
        event["topic"],
        base64.b64decode(event["state"]),
    )
    path = [base64.b64decode(h) for h in proof["proof"]]
    assert proof["tree_size"] == signed.tree_size and proof["checkpoint"] == signed.note
    assert merkle.verify_inclusion(
        proof["leaf_index"], proof["tree_size"], merkle.leaf_hash(leaf), path, signed.root or b""
    )

    missing = web.post("/console/proofs/inclusion", data={"csrf": csrf(page), "event_id": "nope"})
    assert missing.status_code == 404 and 'id="notice"' in missing.text
    assert "attachment" not in missing.headers.get("content-disposition", "")


def test_a_forged_csrf_token_is_refused_and_records_nothing(
    web: TestClient, tokens: dict[str, str], ledger: Ledger, audited: Settings
) -> None:
    signed = sign_checkpoint(audited, ledger)
    signed_in(web, tokens["auditor"])
    as_of = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    refused = web.post("/console/replays", data={"csrf": "forged", "as_of": as_of})
    assert refused.status_code == 403
    assert call(web, tokens["auditor"], "GET", "/v1/replays").json() == []
    verify = web.post(f"/console/checkpoints/{signed.sequence}/verify", data={"csrf": "forged"})
    assert verify.status_code == 403 and 'id="verification"' not in verify.text
    download = web.post("/console/proofs/inclusion", data={"csrf": "forged", "event_id": "x"})
    assert download.status_code == 403 and "attachment" not in str(download.headers)
