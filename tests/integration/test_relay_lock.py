"""The relay's lock on PostgreSQL: a restart of the database ends the session that held it,
the holder notices before its next batch, and a standby that took it keeps it."""

from __future__ import annotations

import threading
from contextlib import closing

import psycopg

from ledger.process.runtime import open_reader
from ledger.process.settings import Settings

LOCK = "relay:compliance.ledger"


def test_a_lost_lock_is_noticed_and_a_standby_that_took_it_keeps_it(
    settings_db_only: Settings,
) -> None:
    with (
        closing(open_reader(settings_db_only)) as first,
        closing(open_reader(settings_db_only)) as standby,
    ):
        assert first.store.acquire_lock(LOCK, threading.Event())
        assert first.store.holds_lock(LOCK)
        gave_up = threading.Event()
        gave_up.set()
        assert not standby.store.acquire_lock(LOCK, gave_up)  # held: the standby waits

        with psycopg.connect(settings_db_only.require_database(), autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() "
                "AND objid::int = hashtext(%s)",
                [f"{settings_db_only.database_schema}:{LOCK}"],
            ).fetchall()
        assert ended == [(True,)]

        assert not first.store.holds_lock(LOCK)
        assert standby.store.acquire_lock(LOCK, threading.Event())
        stop_soon = threading.Event()
        threading.Timer(1.5, stop_soon.set).start()
        assert not first.store.acquire_lock(LOCK, stop_soon, retry_s=0.2)  # now it waits
        assert standby.store.holds_lock(LOCK)
