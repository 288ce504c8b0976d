"""The ingest key table in PostgreSQL, beside the ledger's event store (see
``ledger.keys.ingest_keys``).

- A partial unique index allows at most one current key (``retired_at IS NULL``).
- Adding the first key and rotating take a transaction-scoped advisory lock, so two processes
  doing it at once end with one current key, not a constraint error.
- Destroying sets ``wrapped_private`` to NULL; a check constraint keeps that and
  ``destroyed_at`` together. Times come from the database clock.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from ledger.keys.ingest_keys import IngestKeyRow

_DDL = (
    """CREATE TABLE IF NOT EXISTS {schema}.ingest_keys (
    key_id text PRIMARY KEY,
    algorithm text NOT NULL,
    public_key bytea NOT NULL,
    kek_id text NOT NULL,
    wrapped_private bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    destroyed_at timestamptz,
    CHECK ((wrapped_private IS NULL) = (destroyed_at IS NOT NULL)),
    CHECK (destroyed_at IS NULL OR retired_at IS NOT NULL)
)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS ingest_keys_one_current "
    "ON {schema}.ingest_keys ((retired_at IS NULL)) WHERE retired_at IS NULL",
)
_COLUMNS = (
    "key_id, algorithm, public_key, kek_id, wrapped_private, created_at, retired_at, destroyed_at"
)
CURRENT_KEY = (
    "SELECT key_id, public_key, created_at FROM {schema}.ingest_keys WHERE retired_at IS NULL"
)
"""The query API's read of the current key (``{schema}`` to be formatted)."""


class PostgresIngestKeyTable:
    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.schema_name = datastore.schema
        with self.datastore.transaction(commit=True) as curs:
            # The lock ``ledger.application.service`` takes around its own DDL: concurrent CREATE
            # TABLE IF NOT EXISTS statements would otherwise collide.
            curs.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"ledger:{self.schema_name}"]
            )
            for statement in _DDL:
                curs.execute(self._sql(statement))

    def _sql(self, text: str) -> Composed:
        return SQL(text).format(schema=Identifier(self.schema_name))

    def rows(self) -> list[IngestKeyRow]:
        with self.datastore.transaction() as curs:
            query = f"SELECT {_COLUMNS} FROM {{schema}}.ingest_keys ORDER BY created_at"
            curs.execute(self._sql(query))
            return [_row(r) for r in curs.fetchall()]

    def add_first(self, row: IngestKeyRow) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._lock(curs)
            curs.execute(self._sql("SELECT 1 FROM {schema}.ingest_keys WHERE retired_at IS NULL"))
            if curs.fetchone() is None:
                self._insert(curs, row)

    def rotate(self, row: IngestKeyRow) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._lock(curs)
            curs.execute(
                self._sql(
                    "UPDATE {schema}.ingest_keys SET retired_at = now() WHERE retired_at IS NULL"
                )
            )
            self._insert(curs, row)

    def destroy_retired_for(self, retention: timedelta) -> list[str]:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                self._sql(
                    "UPDATE {schema}.ingest_keys SET wrapped_private = NULL, destroyed_at = now() "
                    "WHERE destroyed_at IS NULL AND retired_at <= now() - %s RETURNING key_id"
                ),
                [retention],
            )
            return sorted(r["key_id"] for r in curs.fetchall())

    def _lock(self, curs: Cursor[DictRow]) -> None:
        curs.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"ingest_keys:{self.schema_name}"]
        )

    def _insert(self, curs: Cursor[DictRow], row: IngestKeyRow) -> None:
        curs.execute(
            self._sql(
                "INSERT INTO {schema}.ingest_keys "
                "(key_id, algorithm, public_key, kek_id, wrapped_private) "
                "VALUES (%s, %s, %s, %s, %s)"
            ),
            [row.key_id, row.algorithm, row.public_key, row.kek_id, row.wrapped_private],
        )


def _row(r: dict[str, Any]) -> IngestKeyRow:
    wrapped = r["wrapped_private"]
    return IngestKeyRow(
        key_id=r["key_id"],
        algorithm=r["algorithm"],
        public_key=bytes(r["public_key"]),
        kek_id=r["kek_id"],
        wrapped_private=None if wrapped is None else bytes(wrapped),
        created_at=r["created_at"],
        retired_at=r["retired_at"],
        destroyed_at=r["destroyed_at"],
    )
