"""Key-encryption key rotation: every wrapped secret re-wrapped under the current KEK, online.

:data:`WRAPPED_SECRET_TABLES` is the one list of tables holding secrets wrapped by the KEK,
each with the associated-data context its wraps are bound to. Rules this module keeps:

- **Online, in batches.** Each batch is one transaction: up to ``batch_size`` rows not under
  the current KEK, after the previous batch's last key in primary-key order, are selected
  ``FOR UPDATE SKIP LOCKED``, unwrapped with the KEK their row names, wrapped with the current
  KEK and updated. Plaintext secrets exist only in this process's memory, for that moment.
- **Never resurrects a deleted secret.** A batch only UPDATEs rows it holds locked, and only
  while they are still under the KEK it read; nothing is ever inserted. An erasure deleting a
  key either commits before the batch reads (the row is not seen) or waits for the batch and
  then deletes the re-wrapped row.
- **Beside the live processes.** They insert new secrets under the current KEK — so every
  process must run with the new KEK configuration before a rotation starts. Rows a live
  transaction holds are skipped; further passes pick them up.
- **Refuses to start** if a row is wrapped under a KEK the ring does not hold, naming the KEK
  id and the count (it could not be re-wrapped, and the operator must know).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.sql import SQL, Composed, Identifier

from ledger.keys import crypto
from ledger.keys.ingest_keys import _context as ingest_key_context
from ledger.keys.kek import KeyRing


@dataclass(frozen=True)
class WrappedSecretTable:
    """A table of KEK-wrapped secrets: ``kek_id`` and the wrap in each row; ``context``
    builds the wrap's associated data from the primary key's values."""

    table: str
    label: str
    key_columns: tuple[str, ...]
    context: Callable[..., bytes]
    wrapped_column: str = "wrapped"


WRAPPED_SECRET_TABLES = (
    WrappedSecretTable(
        "subject_keys", "subject data keys", ("subject_id",), crypto.subject_context
    ),
    WrappedSecretTable(
        "ingest_keys", "ingest private keys", ("key_id",), ingest_key_context, "wrapped_private"
    ),
    WrappedSecretTable(
        "webhook_endpoints",
        "webhook signing secrets",
        ("tenant", "name"),
        crypto.webhook_secret_context,
        "wrapped_secret",
    ),
)
Connection = psycopg.Connection[Any]
OnBatch = Callable[[WrappedSecretTable, int], None]


class RotationBlocked(RuntimeError):
    """Some secrets are wrapped under a KEK that is not configured; the message says which."""


@dataclass
class RotationResult:
    rotated: dict[str, int] = field(default_factory=dict)  # by table label
    remaining: int = 0  # still not under the current KEK (held by live transactions)


def existing_tables(conn: Connection, schema: str) -> list[WrappedSecretTable]:
    """The registered tables that exist in ``schema`` (some are created on first use)."""
    found = []
    for table in WRAPPED_SECRET_TABLES:
        row = conn.execute("SELECT to_regclass(%s)", [f'"{schema}"."{table.table}"']).fetchone()
        if row and row[0] is not None:
            found.append(table)
    return found


def kek_usage(conn: Connection, schema: str) -> dict[str, dict[str, int]]:
    """How many live wrapped secrets each KEK id wraps, by table label."""
    usage: dict[str, dict[str, int]] = {}
    for table in existing_tables(conn, schema):
        rows = conn.execute(
            _sql(
                schema,
                table,
                "SELECT kek_id, count(*) FROM {t} WHERE {w} IS NOT NULL GROUP BY kek_id "
                "ORDER BY kek_id",
            )
        ).fetchall()
        usage[table.label] = {kek_id: int(n) for kek_id, n in rows}
    return usage


def _sql(schema: str, table: WrappedSecretTable, text: str) -> Composed:
    keys = SQL(", ").join(Identifier(c) for c in table.key_columns)
    return SQL(text).format(
        t=SQL("{}.{}").format(Identifier(schema), Identifier(table.table)),
        w=Identifier(table.wrapped_column),
        keys=keys,
        after=SQL(", ").join(SQL("%s") for _ in table.key_columns),
        match=SQL(" AND ").join(SQL("{} = %s").format(Identifier(c)) for c in table.key_columns),
    )


class Rotation:
    """Re-wraps every secret of ``schema`` that is not under ``ring``'s current KEK."""

    def __init__(
        self,
        conn: Connection,
        schema: str,
        ring: KeyRing,
        *,
        batch_size: int = 500,
        on_batch: OnBatch | None = None,
    ) -> None:
        self.conn = conn
        self.schema = schema
        self.ring = ring
        self.batch_size = batch_size
        self.on_batch = on_batch or (lambda table, n: None)
        self.tables = existing_tables(conn, schema)

    def pending(self) -> dict[str, dict[str, int]]:
        """Rows not under the current KEK: by table label, then by KEK id."""
        return {
            label: {k: n for k, n in by_kek.items() if k != self.ring.key_id}
            for label, by_kek in kek_usage(self.conn, self.schema).items()
        }

    def check(self) -> int:
        """The number of rows to re-wrap; raises :class:`RotationBlocked` if any is under a
        KEK the ring does not hold."""
        pending = self.pending()
        missing = [
            f"{n} {label} under {kek_id}"
            for label, by_kek in pending.items()
            for kek_id, n in by_kek.items()
            if not self.ring.holds(kek_id)
        ]
        if missing:
            raise RotationBlocked(
                "secrets wrapped under a KEK that is not configured cannot be re-wrapped: "
                + "; ".join(missing)
                + " (add those KEKs to LEDGER_KEK_PREVIOUS, or they are lost)"
            )
        return sum(sum(by_kek.values()) for by_kek in pending.values())

    def run(self, *, passes: int = 5, wait_s: float = 1.0) -> RotationResult:
        """Passes over every table until nothing is left or ``passes`` are done."""
        self.check()
        result = RotationResult({t.label: 0 for t in self.tables})
        for number in range(passes):
            for table in self.tables:
                result.rotated[table.label] += self._pass(table)
            result.remaining = self.check()
            if not result.remaining:
                break
            if number + 1 < passes:
                time.sleep(wait_s)  # rows held by live transactions: let them finish
        return result

    def _pass(self, table: WrappedSecretTable) -> int:
        rotated, after = 0, None
        while True:
            n, after = self._batch(table, after)
            if not n:
                return rotated
            rotated += n
            self.on_batch(table, n)

    def _batch(self, table: WrappedSecretTable, after: tuple[Any, ...] | None) -> tuple[int, Any]:
        where = "kek_id <> %s AND {w} IS NOT NULL" + (" AND ({keys}) > ({after})" if after else "")
        select = _sql(
            self.schema,
            table,
            "SELECT {keys}, kek_id, {w} FROM {t} WHERE "
            + where
            + " ORDER BY {keys} LIMIT %s FOR UPDATE SKIP LOCKED",
        )
        update = _sql(
            self.schema, table, "UPDATE {t} SET kek_id = %s, {w} = %s WHERE {match} AND kek_id = %s"
        )
        width = len(table.key_columns)
        with self.conn.transaction():
            rows = self.conn.execute(
                select, [self.ring.key_id, *(after or ()), self.batch_size]
            ).fetchall()
            changes = [self._rewrap(table, row[:width], row[width], row[width + 1]) for row in rows]
            with self.conn.cursor() as curs:
                curs.executemany(update, changes)
        return len(rows), (tuple(rows[-1][:width]) if rows else None)

    def _rewrap(
        self, table: WrappedSecretTable, keys: tuple[Any, ...], kek_id: str, wrapped: bytes
    ) -> list[Any]:
        context = table.context(*keys)
        secret = self.ring.unwrap(bytes(wrapped), context, kek_id=kek_id)
        return [self.ring.key_id, self.ring.wrap(secret, context), *keys, kek_id]
