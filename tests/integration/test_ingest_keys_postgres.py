"""Ingest keys on PostgreSQL: one current key under concurrency, and their distribution to
producers through the query API (``GET /v1/ingest-key``) and the client's fetch helper."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
import typer
import uvicorn
from fastapi.testclient import TestClient
from psycopg import sql
from typer.testing import CliRunner

from ledger.application.service import Ledger
from ledger.cli import ingest_keys
from ledger.client import fetch_ingest_key
from ledger.keys.crypto_ingest import INGEST_SCHEME, IngestPublicKey
from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings
from projections.api import access
from projections.api.app import create_app, prepare

SCOPES = ("producer", "reader", "auditor", "admin")


@pytest.fixture
def ledger(settings_db_only: Settings) -> Iterator[Ledger]:
    app = open_ledger(settings_db_only)
    yield app
    app.close()


def test_processes_starting_together_make_one_current_key(settings_db_only: Settings) -> None:
    ledgers = [open_ledger(settings_db_only) for _ in range(4)]
    made: list[str] = []
    start = threading.Barrier(len(ledgers))

    def first_use(app: Ledger) -> None:
        start.wait()
        made.append(app.ingest_keys.current().key_id)

    threads = [threading.Thread(target=first_use, args=(app,)) for app in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = ledgers[0].ingest_keys.key_pairs()
    for app in ledgers:
        app.close()
    assert [r.state for r in rows] == ["current"]
    assert set(made) == {rows[0].key_id}


def test_the_table_holds_at_most_one_current_key(
    ledger: Ledger, settings_db_only: Settings
) -> None:
    current = ledger.ingest_keys.current()
    table = sql.Identifier(settings_db_only.database_schema, "ingest_keys")
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (key_id, algorithm, public_key, kek_id, wrapped_private) "
                    "VALUES ('ik-20260101-00000001', %s, %s, 'kek-1', %s)"
                ).format(table),
                [INGEST_SCHEME, b"p" * 32, b"w"],
            )
        with pytest.raises(psycopg.errors.CheckViolation):  # destroyed keeps no private key
            conn.execute(
                sql.SQL("UPDATE {} SET destroyed_at = now(), retired_at = now()").format(table)
            )
    assert [r.key_id for r in ledger.ingest_keys.key_pairs()] == [current.key_id]


def test_rotation_and_destruction_are_stored(ledger: Ledger, settings_db_only: Settings) -> None:
    first = ledger.ingest_keys.current()
    second = ledger.ingest_keys.rotate()
    ledger.ingest_keys.retention = timedelta(0)
    assert ledger.ingest_keys.destroy_expired() == [first.key_id]
    again = open_ledger(settings_db_only)  # as another process reads it
    try:
        rows = {r.key_id: r for r in again.ingest_keys.key_pairs()}
    finally:
        again.close()
    assert rows[first.key_id].state == "destroyed"
    assert rows[first.key_id].wrapped_private is None
    assert rows[first.key_id].retired_at is not None
    assert rows[second.key_id].state == "current"
    assert rows[second.key_id].wrapped_private


@pytest.fixture
def tokens(settings_db_only: Settings) -> dict[str, str]:
    prepare(settings_db_only)  # makes the first ingest key, as `ledger serve` does
    schema = settings_db_only.database_schema
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        return {s: access.create_key(conn, schema, "acme", [s])[0] for s in SCOPES} | {
            "globex": access.create_key(conn, schema, "globex", ["producer"])[0]
        }


@pytest.fixture
def api(settings_db_only: Settings, tokens: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_db_only), raise_server_exceptions=False) as client:
        yield client


def get_key(api: TestClient, token: str) -> dict[str, str]:
    response = api.get("/v1/ingest-key", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    document: dict[str, str] = response.json()
    return document


def test_every_scope_gets_its_tenant_key_document(
    api: TestClient, tokens: dict[str, str], ledger: Ledger
) -> None:
    expected = ledger.ingest_keys.public_key_for("acme")
    for scope in SCOPES:
        document = get_key(api, tokens[scope])
        assert IngestPublicKey.from_json(document) == expected
        assert document["created_at"]
    globex = IngestPublicKey.from_json(get_key(api, tokens["globex"]))
    assert globex.tenant == "globex"
    assert globex.public_key == expected.public_key
    assert globex.routing_key != expected.routing_key


def test_the_operator_prints_the_document_the_api_answers(
    api: TestClient, tokens: dict[str, str], environ_db_only: dict[str, str]
) -> None:
    app = typer.Typer()
    ingest_keys.register(app)
    shown = CliRunner().invoke(
        app, ["ingest-keys", "show", "--tenant", "acme"], env=environ_db_only
    )
    assert shown.exit_code == 0, shown.output
    answered = get_key(api, tokens["producer"])
    assert json.loads(shown.stdout) == answered
    assert sorted(answered) == [
        "algorithm",
        "created_at",
        "hybrid_public_key",
        "key_id",
        "public_key",
        "routing_key",
        "tenant",
    ]


def test_the_key_document_needs_an_api_key(api: TestClient) -> None:
    response = api.get("/v1/ingest-key")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


def test_a_rotation_shows_at_once(api: TestClient, tokens: dict[str, str], ledger: Ledger) -> None:
    before = get_key(api, tokens["producer"])["key_id"]
    rotated = ledger.ingest_keys.rotate()
    assert rotated.key_id != before
    assert get_key(api, tokens["producer"])["key_id"] == rotated.key_id


def test_a_database_without_a_key_answers_503(
    api: TestClient, tokens: dict[str, str], settings_db_only: Settings
) -> None:
    with psycopg.connect(settings_db_only.require_database(), autocommit=True) as conn:
        table = sql.Identifier(settings_db_only.database_schema, "ingest_keys")
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
    response = api.get("/v1/ingest-key", headers={"Authorization": f"Bearer {tokens['reader']}"})
    assert response.status_code == 503


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_client_fetches_the_key_from_a_running_api(
    settings_db_only: Settings, tokens: dict[str, str], ledger: Ledger
) -> None:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings_db_only), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        key = fetch_ingest_key(f"http://127.0.0.1:{port}/", tokens["producer"])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert key == ledger.ingest_keys.public_key_for("acme")
