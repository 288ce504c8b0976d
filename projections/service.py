"""``ledger project``: every view (or the chosen ones), each followed by its own thread.

Each view's runner first takes a database lock named after the view, so a second
``ledger project`` beside the first is a hot standby, not a second writer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ledger.application.service import LedgerReader
from ledger.plumbing.logs import get as get_logger
from ledger.process.settings import Settings
from projections.catalog import VIEWS, live_schema, open_view
from projections.runner import ProjectionRunner, hold_lock

log = get_logger("projections")


def run_views(
    settings: Settings, reader: LedgerReader, names: Sequence[str], stop: threading.Event
) -> None:
    threads = [
        threading.Thread(target=_run_one, args=(settings, reader, name, stop), name=f"view-{name}")
        for name in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _run_one(settings: Settings, reader: LedgerReader, name: str, stop: threading.Event) -> None:
    lock_name = f"projection:{live_schema(settings, name)}"
    log.info("projection_waiting_for_lock", projection=name)
    lock = hold_lock(settings.require_database(), lock_name, stop)
    if lock is None:
        return
    try:
        while not stop.is_set():
            try:
                view = open_view(settings, name)
            except Exception as exc:  # the database is down: wait for it
                log.warning("projection_cannot_open", projection=name, error=type(exc).__name__)
                stop.wait(2.0)
                continue
            try:
                runner = ProjectionRunner(reader, view, batch_size=settings.projection_batch_size)
                runner.run(stop)
            finally:
                view.datastore.close()
    finally:
        lock.close()


def catch_up(settings: Settings, reader: LedgerReader, names: Sequence[str] = tuple(VIEWS)) -> int:
    """Brings each view up to the ledger's head as it is now, in this thread; returns the head.
    For tools and tests that need the views current before they ask them."""
    head = reader.recorder.max_notification_id() or 0
    for name in names:
        view = open_view(settings, name)
        try:
            ProjectionRunner(reader, view, batch_size=settings.projection_batch_size).follow(
                threading.Event(), until=head
            )
        finally:
            view.datastore.close()
    return head
