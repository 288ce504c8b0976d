"""Where signed checkpoints are kept (PostgreSQL table ``checkpoints``), and how one is made.

Rules this module keeps:

- **A checkpoint never certifies a broken chain.** :func:`make_checkpoint` verifies the chain
  from the previous checkpoint (whose head it starts from) up to the new sequence, and signs
  the *recomputed* head only if every link there verifies.
- **A checkpoint never certifies a tree that differs from the events.** The tree head it
  signs is the stored tree's; :func:`make_checkpoint` first recomputes it from the previous
  checkpoint's stored frontier (which that checkpoint's root vouches for) and the events since,
  and checks that every node stored since is the hash of its children, so the proofs served
  from them lead to the signed root.
- **Append-only.** Rows are inserted, never updated; a sequence is checkpointed once. Witness
  cosignatures are added beside a checkpoint (``checkpoint_cosignatures``), never into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed, Identifier

from ledger.integrity import proofs
from ledger.integrity.checkpoints import Checkpoint, CheckpointSigner
from ledger.integrity.sources import store_items
from ledger.integrity.verify import Problem, verify
from ledger.storage import merkle
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
_UPGRADE = (  # checkpoints signed before the Merkle log keep these null
    "ALTER TABLE {schema}.checkpoints ADD COLUMN IF NOT EXISTS tree_size bigint, "
    "ADD COLUMN IF NOT EXISTS root bytea, ADD COLUMN IF NOT EXISTS note text"
)
_CREATE_COSIGNATURES = (
    "CREATE TABLE IF NOT EXISTS {schema}.checkpoint_cosignatures ("
    " sequence bigint NOT NULL,"
    " line text NOT NULL,"
    " witness text NOT NULL,"
    " added_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (sequence, line))"
)
_CREATE_WITNESSES = (  # the tree size each witness last cosigned (tlog-witness "old")
    "CREATE TABLE IF NOT EXISTS {schema}.witness_state ("
    " witness text PRIMARY KEY,"
    " size bigint NOT NULL)"
)
_COLUMNS = "sequence, head, time_us, key_id, signature, tree_size, root, note"


class ChainBroken(RuntimeError):
    """The chain does not verify since the last checkpoint; no checkpoint is signed."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(f"position {problem.position}: {problem.reason} — {problem.detail}")
        self.problem = problem


class CheckpointTable:
    def __init__(self, conn: psycopg.Connection[Any], schema: str) -> None:
        self.conn = conn
        self.schema = Identifier(schema)
        for statement in (_CREATE, _CREATE_KEYS, _UPGRADE, _CREATE_COSIGNATURES, _CREATE_WITNESSES):
            self.conn.execute(self._sql(statement))

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
                f"INSERT INTO {{schema}}.checkpoints ({_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            ),
            [c.sequence, c.head, c.time_us, c.key_id, c.signature, c.tree_size, c.root, c.note],
        )

    def add_cosignatures(self, sequence: int, witness: str, lines: Sequence[str]) -> None:
        """Keeps verified cosignature lines of the checkpoint at ``sequence``."""
        for line in lines:
            self.conn.execute(
                self._sql(
                    "INSERT INTO {schema}.checkpoint_cosignatures (sequence, line, witness) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
                ),
                [sequence, line, witness],
            )

    def witness_size(self, witness: str) -> int:
        row = self.conn.execute(
            self._sql("SELECT size FROM {schema}.witness_state WHERE witness = %s"), [witness]
        ).fetchone()
        return int(row[0]) if row else 0

    def set_witness_size(self, witness: str, size: int) -> None:
        self.conn.execute(
            self._sql(
                "INSERT INTO {schema}.witness_state (witness, size) VALUES (%s, %s) "
                "ON CONFLICT (witness) DO UPDATE SET size = excluded.size"
            ),
            [witness, size],
        )

    def all(self, limit: int | None = None, *, with_tree: bool = False) -> list[Checkpoint]:
        """Newest first (only those with a tree head if ``with_tree``), each note with the
        cosignatures added since it was signed."""
        where = " WHERE tree_size IS NOT NULL" if with_tree else ""
        query = f"SELECT {_COLUMNS} FROM {{schema}}.checkpoints{where} ORDER BY sequence DESC"
        with self.conn.cursor(row_factory=dict_row) as curs:
            curs.execute(
                self._sql(query + (" LIMIT %s" if limit else "")), [limit] if limit else []
            )
            rows = curs.fetchall()
            curs.execute(
                self._sql(
                    "SELECT sequence, line FROM {schema}.checkpoint_cosignatures "
                    "WHERE sequence = ANY(%s) ORDER BY added_at, line"
                ),
                [[r["sequence"] for r in rows]],
            )
            lines: dict[int, list[str]] = {}
            for row in curs.fetchall():
                lines.setdefault(row["sequence"], []).append(row["line"])
        return [with_cosignatures(from_row(r), lines.get(r["sequence"], [])) for r in rows]

    def public_keys(self) -> dict[str, bytes]:
        rows = self.conn.execute(
            self._sql("SELECT key_id, public_key FROM {schema}.checkpoint_keys")
        )
        return {key_id: bytes(key) for key_id, key in rows.fetchall()}

    def latest(self) -> Checkpoint | None:
        found = self.all(limit=1)
        return found[0] if found else None


def from_row(row: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        row["sequence"],
        bytes(row["head"]),
        row["time_us"],
        row["key_id"],
        bytes(row["signature"]),
        row.get("tree_size"),
        None if row.get("root") is None else bytes(row["root"]),
        row.get("note"),
    )


def with_cosignatures(checkpoint: Checkpoint, lines: Sequence[str]) -> Checkpoint:
    """The checkpoint whose note also carries these signature lines (each ends in a newline)."""
    if not checkpoint.note or not lines:
        return checkpoint
    known = set(checkpoint.note.splitlines(keepends=True))
    extra = "".join(line for line in lines if line not in known)
    return replace(checkpoint, note=checkpoint.note + extra)


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
    tree = tree_head(store, last, report.last_event)
    checkpoint = signer.sign(
        report.last_event, report.recomputed_head, at or datetime.now(UTC), tree
    )
    table.add(checkpoint, signer.public_key)
    return checkpoint


def tree_head(store: LedgerStore, last: Checkpoint | None, upto: int) -> tuple[int, bytes]:
    """The stored tree's (size, root) at the event ``upto``, after recomputing it from the
    events since ``last`` (from the first event if ``last`` has no tree head). Raises
    :class:`ChainBroken` with reason ``tree`` if the stored tree differs."""
    store.grow_tree(upto)
    size = store.tree_size(upto)
    stored_root = proofs.root(store, size)
    if last is not None and last.tree_size is not None and last.root is not None:
        keys = merkle.frontier_keys(last.tree_size)
        nodes = store.merkle_nodes(keys)
        if len(nodes) != len(keys) or merkle.root_of([nodes[k] for k in keys]) != last.root:
            raise ChainBroken(
                Problem(last.sequence, "tree", "the stored tree differs from its checkpoint")
            )
        frontier = merkle.Frontier.resume(last.tree_size, [nodes[k] for k in keys])
        start = last.sequence + 1
    else:
        frontier, start = merkle.Frontier(), 1
    for page in store_items(store, start=start, stop=upto).pages():
        for row in page.rows:
            frontier.add(merkle.leaf_hash(merkle.leaf(*row)))
    if (frontier.size, frontier.root()) != (size, stored_root):
        detail = f"the stored tree of {size} leaves differs from the events'"
        raise ChainBroken(Problem(upto, "tree", detail))
    bad = proofs.first_bad_node(store, last.tree_size if last and last.tree_size else 0, size)
    if bad is not None:
        detail = f"the stored node at level {bad[0]}, index {bad[1]} is not its children's hash"
        raise ChainBroken(Problem(upto, "tree", detail))
    return size, stored_root


def by_sequence(checkpoints: Sequence[Checkpoint]) -> list[Checkpoint]:
    return sorted(checkpoints, key=lambda c: c.sequence)
