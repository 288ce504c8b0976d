"""Rebuilding a view from the first event, while the live one keeps serving.

1. Drop whatever an interrupted rebuild left in ``<view schema>_rebuild`` and create it anew.
2. Apply every event up to the ledger's current head there, in batches (progress reported).
3. Run the view's upkeep (the retention sweep) so it starts as the live view would stand.
4. Swap, in one transaction: lock the live view's tracking table (the live runner cannot
   commit while it is held), apply the events recorded meanwhile, rename the live schema
   away, rename the rebuilt one into its place, drop the old one. Readers see the old view
   until the commit and the new one after it.

A live runner blocked by the swap resumes on the new view: its next transaction reads the new
tracking position and skips every event the rebuild has already applied.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from ledger.application.service import LedgerReader
from ledger.process.settings import Settings
from projections.catalog import live_schema, open_view
from projections.runner import ProjectionRunner
from projections.view import REBUILD_SUFFIX

Progress = Callable[[int, int], None]  # (position, head)


def rebuild(
    settings: Settings,
    name: str,
    reader: LedgerReader,
    *,
    on_progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Rebuilds the named view and swaps it in; returns its position after the swap."""
    stop = stop or threading.Event()
    _drop_schema(settings, live_schema(settings, name) + REBUILD_SUFFIX)
    view = open_view(settings, name, rebuild=True)
    try:
        runner = ProjectionRunner(reader, view, batch_size=settings.projection_batch_size)
        head = reader.recorder.max_notification_id() or 0
        runner.follow(stop, until=head, on_batch=_reporter(on_progress, head))
        if stop.is_set():
            raise InterruptedError(f"rebuild of {name} stopped before it finished")
        view.maintain()
        return _swap(settings, name, reader, runner, on_progress)
    finally:
        view.datastore.close()


def _reporter(on_progress: Progress | None, head: int) -> Callable[[int], None] | None:
    if on_progress is None:
        return None
    return lambda position: on_progress(position, head)


def _swap(
    settings: Settings,
    name: str,
    reader: LedgerReader,
    runner: ProjectionRunner,
    on_progress: Progress | None,
) -> int:
    live = live_schema(settings, name)
    rebuilt = live + REBUILD_SUFFIX
    old = live + "_old"
    with _connect(settings) as conn, conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '60s'")
        conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(old)))
        if _schema_exists(conn, live):
            conn.execute(
                SQL("LOCK TABLE {}.tracking IN ACCESS EXCLUSIVE MODE").format(Identifier(live))
            )
        head = reader.recorder.max_notification_id() or 0
        report = _reporter(on_progress, head)
        position = runner.follow(threading.Event(), until=head, on_batch=report)
        if _schema_exists(conn, live):
            conn.execute(
                SQL("ALTER SCHEMA {} RENAME TO {}").format(Identifier(live), Identifier(old))
            )
        conn.execute(
            SQL("ALTER SCHEMA {} RENAME TO {}").format(Identifier(rebuilt), Identifier(live))
        )
        conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(old)))
    return position


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    return psycopg.connect(settings.require_database(), autocommit=True, connect_timeout=10)


def _schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", [schema]).fetchone()
    return bool(row and row[0])


def _drop_schema(settings: Settings, schema: str) -> None:
    with _connect(settings) as conn:
        conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))
