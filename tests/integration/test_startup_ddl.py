"""A process that opens the ledger while another records events must start (found by the fault
injection suite: a restarted relay died with "deadlock detected")."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from ledger.runtime import open_ledger
from ledger.settings import Settings


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
