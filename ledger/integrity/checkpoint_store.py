"""Where signed checkpoints are kept (PostgreSQL table ``checkpoints``), and how one is made.

Rules this module keeps:

- **A checkpoint never certifies a broken chain.** :func:`make_checkpoint` verifies the chain
  from the previous checkpoint (whose head it starts from) up to the new sequence, and signs
  the *recomputed* head only if every link there verifies.
- **Append-only.** Rows are inserted, never updated; a sequence is checkpointed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed, Identifier

from ledger.integrity.checkpoints import Checkpoint, CheckpointSigner
from ledger.integrity.sources import store_items
from ledger.integrity.verify import Problem, verify
from ledger.storage.store import LedgerStore

_CREATE = (
    "CREATE TABLE IF NOT EXISTS {schema}.checkpoints ("
    " sequence bigint PRIMARY KEY,"
    " head bytea NOT NULL,"
    " time_us bigint NOT NULL,"
    " key_id text NOT NULL,"
    " signature bytea NOT NULL)"
)
_CREATE_KEYS = (
    "CREATE TABLE IF NOT EXISTS {schema}.checkpoint_keys ("
    " key_id text PRIMARY KEY,"
    " public_key bytea NOT NULL,"
    " first_used timestamptz NOT NULL DEFAULT now())"
)
_COLUMNS = "sequence, head, time_us, key_id, signature"


class ChainBroken(RuntimeError):
    """The chain does not verify since the last checkpoint; no checkpoint is signed."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"position {problem.position}: {problem.reason} — {problem.detail}")
        self.problem = problem


class CheckpointTable:
    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        self.conn = conn
        self.schema = Identifier(schema)
        self.conn.execute(self._sql(_CREATE))
        self.conn.execute(self._sql(_CREATE_KEYS))

    def _sql(self, text: str) -> Composed:
        return SQL(text).format(schema=self.schema)

    def add(self, checkpoint: Checkpoint, public_key: bytes) -> None:
        """Stores the checkpoint, and the public key it verifies under (published by the API,
        so the API needs no private key)."""
        c = checkpoint
        self.conn.execute(
            self._sql(
                "INSERT INTO {schema}.checkpoint_keys (key_id, public_key) VALUES (%s, %s) "
                "ON CONFLICT (key_id) DO NOTHING"
            ),
            [c.key_id, public_key],
        )
        self.conn.execute(
            self._sql(
                f"INSERT INTO {{schema}}.checkpoints ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s)"
            ),
            [c.sequence, c.head, c.time_us, c.key_id, c.signature],
        )

    def all(self, limit: int | None = None) -> list[Checkpoint]:
        """Newest first."""
        query = f"SELECT {_COLUMNS} FROM {{schema}}.checkpoints ORDER BY sequence DESC"
        with self.conn.cursor(row_factory=dict_row) as curs:
            curs.execute(
                self._sql(query + (" LIMIT %s" if limit else "")), [limit] if limit else []
            )
            return [_checkpoint(row) for row in curs.fetchall()]

    def public_keys(self) -> dict[str, bytes]:
        rows = self.conn.execute(
            self._sql("SELECT key_id, public_key FROM {schema}.checkpoint_keys")
        )
        return {key_id: bytes(key) for key_id, key in rows.fetchall()}

    def latest(self) -> Checkpoint | None:
        found = self.all(limit=1)
        return found[0] if found else None


def _checkpoint(row: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        row["sequence"], bytes(row["head"]), row["time_us"], row["key_id"], bytes(row["signature"])
    )


def make_checkpoint(
    store: LedgerStore,
    table: CheckpointTable,
    signer: CheckpointSigner,
    upto: int,
    at: datetime | None = None,
) -> Checkpoint | None:
    """Signs and stores a checkpoint at the last event at or before ``upto``; None if there is
    none newer than the latest checkpoint. Raises :class:`ChainBroken`."""
    last = table.latest()
    items = store_items(store, start=last.sequence + 1 if last else 1, stop=upto)
    report = verify(items, start=(last.sequence, last.head) if last else None)
    if not report.ok:
        first = report.first
        assert first is not None
        raise ChainBroken(first)
    if report.events == 0:
        return None
    checkpoint = signer.sign(report.last_event, report.recomputed_head, at or datetime.now(UTC))
    table.add(checkpoint, signer.public_key)
    return checkpoint


def by_sequence(checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
    return sorted(checkpoints, key=lambda c: c.sequence)
