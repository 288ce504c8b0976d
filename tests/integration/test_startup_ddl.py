"""Start-up DDL: a process that opens the ledger while another records events must start (found
by the fault injection suite: a restarted relay died with "deadlock detected"), and starting,
again and again, leaves no ERROR in PostgreSQL's log."""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ledger.process.runtime import open_ledger
from ledger.process.settings import Settings, load
from ledger.servers.embedded import EmbeddedPackageMissing, EmbeddedPostgres
from projections.api.app import prepare
from tests.conftest import require_service


def test_opening_the_ledger_beside_a_writer_survives_a_deadlock(settings_db_only: Settings) -> None:
    settings = settings_db_only
    open_ledger(settings).close()  # the tables exist, as when a process restarts
    schema = sql.Identifier(settings.database_schema)
    refs = f"{settings.database_schema}.subject_refs"
    outcome: dict[str, Any] = {}

    def open_beside() -> None:
        try:
            open_ledger(settings).close()
            outcome["opened"] = True
        except Exception as exc:
            outcome["error"] = exc

    # A writer's locks in the order `insert_events` takes them: the subject tables, then the
    # event table. The opening process's DDL share-locks the event table, then subject_refs.
    with psycopg.connect(settings.require_database()) as writer:
        writer.execute(
            sql.SQL("INSERT INTO {}.subject_refs VALUES ('acme', %s, %s)").format(schema),
            [b"\x01", uuid.uuid4()],
        )
        opening = threading.Thread(target=open_beside)
        opening.start()
        deadline = time.monotonic() + 30
        while not _waits_on(writer, refs):
            assert time.monotonic() < deadline, "the opening process never waited on the writer"
            time.sleep(0.05)
        writer.execute(sql.SQL("LOCK TABLE {}.ledger_events IN EXCLUSIVE MODE").format(schema))
        writer.commit()
    opening.join(timeout=60)
    assert outcome == {"opened": True}


def _waits_on(conn: psycopg.Connection[Any], table: str) -> bool:
    """Whether another session waits for a lock on ``table``."""
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = to_regclass(%s) AND NOT granted", [table]
    ).fetchone()
    return row == (1,)


def test_starting_twice_logs_no_error_in_postgresql(tmp_path: Path) -> None:
    """What every process and CLI command does on start (the API's ``prepare`` opens the
    ledger, the views, the key and replay tables), twice, on a server of our own whose log we
    can read. The library's CREATE TYPE used to log "already exists" each time, and a view's
    first start logged its missing tracking table."""
    server = EmbeddedPostgres(tmp_path / "pg")
    try:
        url = server.start()
    except EmbeddedPackageMissing as exc:
        require_service("PostgreSQL", f"this test reads an embedded server's log, and {exc}")
    try:
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        settings = load(
            {
                "LEDGER_DATABASE_URL": url,
                "LEDGER_KEK": key,
                "LEDGER_LOOKUP_KEY": key,
                "LEDGER_DATA_DIR": str(tmp_path / "data"),
            }
        )
        for _ in range(2):
            prepare(settings)
            open_ledger(settings).close()
    finally:
        server.stop()
    log = (tmp_path / "pg" / "log").read_text()
    assert [line for line in log.splitlines() if "ERROR:" in line] == []
