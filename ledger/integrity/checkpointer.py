"""Periodic signed checkpoints, taken by the relay after it has published.

Rules this module keeps:

- **Only what is published is checkpointed.** The relay calls :meth:`Checkpointer.published`
  after the broker acknowledged a batch; the checkpoint's sequence is the relay's position, so
  every event a checkpoint covers is already on the ledger topic before the checkpoint is.
- **Every ``LEDGER_CHECKPOINT_EVERY`` events or ``LEDGER_CHECKPOINT_INTERVAL``**, whichever
  comes first, and only if something new was published. The interval also runs while the
  relay is idle (:meth:`Checkpointer.idle`), so the newest events of a quiet ledger are signed
  within the interval instead of waiting for more traffic.
- **A broken chain is never signed** (``checkpoint_store.make_checkpoint``); the refusal is
  logged as an error with the position and reason, and the relay keeps publishing.
- **Stored, cosigned, then published** on the checkpoint topic (``compliance.Checkpoint``):
  the configured witnesses are asked for their cosignatures first (``ledger.integrity.
  witnesses``), so the published note carries those that came. A checkpoint that failed to
  publish is still in the table and the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta

import psycopg

from ledger.integrity.checkpoint_store import ChainBroken, CheckpointTable, make_checkpoint
from ledger.integrity.checkpoints import Checkpoint, CheckpointSigner
from ledger.integrity.witnesses import Witnessing
from ledger.plumbing.logs import get as get_logger
from ledger.storage.store import LedgerStore
from ledger.wire import avro

Publish = Callable[[bytes], None]
OpenTable = Callable[[], AbstractContextManager[CheckpointTable]]


def table_opener(database_url: str, schema: str) -> OpenTable:
    """A connection per checkpoint: checkpoints are rare, and a long-idle connection that the
    server dropped would otherwise fail every one after it."""

    @contextmanager
    def open_table() -> Iterator[CheckpointTable]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            yield CheckpointTable(conn, schema)

    return open_table


def encode(checkpoint: Checkpoint) -> bytes:
    c = checkpoint
    return avro.encode(
        "Checkpoint",
        {
            "sequence": c.sequence,
            "head": c.head,
            "time_us": c.time_us,
            "key_id": c.key_id,
            "signature": c.signature,
            "tree_size": c.tree_size,
            "root": c.root,
            "note": c.note,
        },
    )


class Checkpointer:
    def __init__(
        self,
        store: LedgerStore,
        open_table: OpenTable,
        signer: CheckpointSigner,
        publish: Publish,
        *,
        every: int,
        interval: timedelta,
        witnessing: Witnessing | None = None,
    ) -> None:
        self.store, self.open_table, self.signer, self.publish = store, open_table, signer, publish
        self.every = every
        self.witnessing = witnessing
        self.interval_s = interval.total_seconds()
        self.pending = 0
        self.position = 0  # the last position published
        self.last_at = time.monotonic()
        self.log = get_logger("checkpoints", key_id=signer.key_id)

    def published(self, position: int, count: int) -> Checkpoint | None:
        """Called after ``count`` records up to ``position`` were acknowledged."""
        self.pending += count
        self.position = position
        due = self.pending >= self.every or time.monotonic() - self.last_at >= self.interval_s
        if not (due and self.pending):
            return None
        return self.now(position)

    def idle(self) -> Checkpoint | None:
        """Called while there is nothing new to publish: signs what was published since the
        last checkpoint once the interval has passed."""
        if self.pending and time.monotonic() - self.last_at >= self.interval_s:
            return self.now(self.position)
        return None

    def now(self, position: int) -> Checkpoint | None:
        self.pending, self.last_at = 0, time.monotonic()
        try:
            with self.open_table() as table:
                made = make_checkpoint(self.store, table, self.signer, position)
                if made is not None and self.witnessing is not None:
                    made = self.witnessing.cosign(self.store, table, made)
        except ChainBroken as exc:
            self.log.error(
                "checkpoint_refused_chain_broken",
                position=exc.problem.position,
                reason=exc.problem.reason,
            )
            return None
        if made is not None:
            self.publish(encode(made))
            self.log.info("checkpoint_signed", sequence=made.sequence, head=made.head.hex())
        return made
