"""Building a replay: the views as they stood at an instant, with the chain verified on the way.

Rules this module keeps:

- **As of an instant means by the ledger's clock.** An event belongs to the replay as of ``T``
  when the ledger recorded it at or before ``T`` — its ``timestamp``, which is part of the
  stored (hashed) form, so no one can move an event across ``T`` without breaking the chain.
  Events recorded later are read and verified but not applied.
- **One pass.** The event store is read once, in ledger order, in pages; every event feeds the
  chain verifier, and those recorded by ``T`` are decoded and applied to each view by the
  views' own handlers (:meth:`View.process_batch`) — the code that builds the live views, so
  the replay answers as they answered at ``T``.
- **Retention as of T.** The records view is swept as of ``T`` and queried with ``T`` as now,
  so the one-year horizon is the one that held at ``T``.
- **Verified up to the head read.** Checkpoints stored by then are checked against the
  recomputed chain (signature under the key they name, head at their sequence). A replay over
  a chain that does not verify is still built, and says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent, Tracking

from ledger.application.service import LedgerReader
from ledger.integrity import witnesses
from ledger.integrity.audit import Audit, WitnessPolicy, check_checkpoint
from ledger.integrity.checkpoint_store import CheckpointTable
from ledger.integrity.checkpoints import Checkpoint
from ledger.integrity.sources import store_items
from ledger.integrity.verify import ChainVerifier
from ledger.process.settings import Settings
from ledger.storage.chain import Row
from projections.catalog import open_view
from projections.replay.registry import view_schemas
from projections.view import APPLICATION_NAME, View

Progress = Callable[[int, int, int], None]  # (position read, head, events applied)
APPLY_BATCH = 2_000
PAGE = 5_000


@dataclass(frozen=True)
class Built:
    """What a build did: the head it read to, the last event it applied (``cut``), how many it
    applied, and the audit of the chain it read."""

    replay_id: str
    as_of: datetime
    head: int
    cut: int
    applied: int
    audit: Audit

    def verification(self) -> dict[str, Any]:
        """The audit as the replay's row keeps it (and the API shows it)."""
        first = self.audit.first
        return {
            "ok": self.audit.ok,
            "events": self.audit.report.events,
            "up_to": self.audit.report.last,
            "problems": self.audit.report.problem_count
            + sum(not c.holds for c in self.audit.checkpoints),
            "first_problem": None
            if first is None
            else {"position": first.position, "reason": first.reason, "detail": first.detail},
            "checkpoints_held": sum(c.holds for c in self.audit.checkpoints),
            "checkpoints_failed": sum(not c.holds for c in self.audit.checkpoints),
        }


def build(
    settings: Settings,
    reader: LedgerReader,
    replay_id: str,
    as_of: datetime,
    *,
    on_progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Built:
    """Builds the replay's views (their schemas must not exist yet) and verifies the chain."""
    stop = stop or threading.Event()
    started = time.perf_counter()
    checkpoints, keys = _checkpoints(settings)  # before the head: all at or below it
    head = reader.store.max_notification_id() or 0
    with ExitStack() as stack:
        views = []
        for name, schema in view_schemas(settings, replay_id).items():
            views.append(open_view(settings, name, schema=schema))
            stack.callback(views[-1].datastore.close)
        verifier = ChainVerifier(watch=[c.sequence for c in checkpoints])
        feed = _Feed(reader, views)
        stack.callback(feed.close)
        for page in store_items(reader.store, PAGE, stop=head).pages():
            if stop.is_set():
                raise InterruptedError(f"replay {replay_id} stopped before it finished")
            verifier.feed_page(page)
            for row in page.rows:
                feed.offer(row, as_of)
            feed.flush()
            if on_progress is not None:
                on_progress(verifier.report.last, head, feed.applied)
        feed.flush()
        feed.wait()
        for view in views:
            view.maintain(now=as_of)
        if on_progress is not None:
            on_progress(head, head, feed.applied)
        policy = _witness_policy(settings)
        results = [check_checkpoint(c, verifier.report, keys, policy) for c in checkpoints]
        seconds = time.perf_counter() - started
        audit = Audit("event store", verifier.report, seconds, results)
        return Built(replay_id, as_of, head, feed.cut, feed.applied, audit)


class _Feed:
    """Decodes the events recorded by the instant and applies them to every view in batches.

    Each view applies a batch on a thread of its own (its own connection), while this thread
    reads and decodes the next batch; a view never starts a batch before finishing the one
    before it, so each view sees the events in ledger order."""

    def __init__(self, reader: LedgerReader, views: list[View]) -> None:
        self.mapper = reader.mapper
        self.views = views
        self.pending: list[tuple[Any, Tracking]] = []
        self.applied = 0
        self.cut = 0
        self._pool = ThreadPoolExecutor(max_workers=len(views), thread_name_prefix="replay-view")
        self._in_hand: list[Future[int]] = []

    def offer(self, row: Row, as_of: datetime) -> None:
        sequence, originator, version, topic, state = row
        event: Any = self.mapper.to_domain_event(
            StoredEvent(
                originator_id=UUID(originator),
                originator_version=version,
                topic=topic,
                state=state,
            )
        )
        if event.timestamp > as_of:
            return
        self.pending.append((event, Tracking(APPLICATION_NAME, sequence)))
        if len(self.pending) >= APPLY_BATCH:
            self.flush()

    def flush(self) -> None:
        """Hands the pending events to the views once they finished the previous batch."""
        if not self.pending:
            return
        self.wait()
        batch, self.pending = self.pending, []
        self._in_hand = [self._pool.submit(view.process_batch, batch) for view in self.views]
        self.applied += len(batch)
        self.cut = batch[-1][1].notification_id

    def wait(self) -> None:
        """Until every view has applied every batch handed to it; raises what one raised."""
        in_hand, self._in_hand = self._in_hand, []
        for future in in_hand:
            future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _witness_policy(settings: Settings) -> WitnessPolicy:
    """The cosignatures each checkpoint's note must carry: ``LEDGER_WITNESS_QUORUM`` of the
    witnesses in ``LEDGER_WITNESSES``."""
    known = [w.key for w in witnesses.parse(settings.witnesses)]
    return WitnessPolicy(known, settings.witness_quorum)


def _checkpoints(settings: Settings) -> tuple[list[Checkpoint], list[bytes]]:
    """The stored checkpoints and the public keys the ledger published (every one it has
    signed with, so checkpoints from before a key rotation still verify)."""
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        table = CheckpointTable(conn, settings.database_schema)
        return table.all(), list(table.public_keys().values())
