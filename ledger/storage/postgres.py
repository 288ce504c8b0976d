"""The ledger's PostgreSQL recorder: `eventsourcing`'s application recorder plus the key,
reference and receipt tables, written in the events' own transaction (see
``ledger.storage.store``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from threading import Event
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    InterfaceError,
    InternalError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger.storage import chain_postgres, merkle, merkle_postgres
from ledger.storage.chain import Link, Row
from ledger.storage.store import (
    EVENTS_PER_COMMAND,
    LedgerStore,
    Receipt,
    Shredded,
    SubjectRef,
    WrappedKey,
    event_id_of,
)
from ledger.storage.write_watch import WriteWatch

_TABLES = """
CREATE TABLE IF NOT EXISTS {schema}.subject_keys (
    subject_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    kek_id text NOT NULL,
    wrapped bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.subject_refs (
    tenant text NOT NULL,
    digest bytea NOT NULL,
    subject_id uuid NOT NULL,
    PRIMARY KEY (tenant, digest)
);
CREATE INDEX IF NOT EXISTS subject_refs_by_subject ON {schema}.subject_refs (subject_id);
CREATE TABLE IF NOT EXISTS {schema}.erased_refs (
    tenant text NOT NULL,
    digest bytea NOT NULL,
    PRIMARY KEY (tenant, digest)
);
CREATE TABLE IF NOT EXISTS {schema}.ingest_receipts (
    tenant text NOT NULL,
    event_id text NOT NULL,
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, event_id)
);
CREATE TABLE IF NOT EXISTS {schema}.ingest_counts (
    outcome text NOT NULL,
    reason text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (outcome, reason)
);
CREATE TABLE IF NOT EXISTS {schema}.positions (
    name text PRIMARY KEY,
    position bigint NOT NULL
);
"""

# eventsourcing creates its composite row type with a bare CREATE TYPE and ignores the
# "already exists" error, which PostgreSQL still logs as an ERROR on every start. The same
# statement, run only when the type is missing; a concurrent start that creates it in between
# is caught inside the block, where PostgreSQL logs nothing.
_CREATE_TYPE_ONCE = """DO $ledger$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE n.nspname = {schema} AND t.typname = {name}) THEN
    {create};
  END IF;
EXCEPTION WHEN duplicate_object THEN NULL;
END $ledger$"""

DDL_ATTEMPTS = 5
_MAX_ID = 2**63 - 1  # bigint's largest: no upper bound
# The server ended the session for a timeout (``ledger.storage.pg_session``): retried like a
# lost one.
_SESSION_ENDED = (
    psycopg.errors.TransactionTimeout,
    psycopg.errors.IdleInTransactionSessionTimeout,
)


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    """Rows as one list per column, the parameters of an ``unnest`` insert."""
    return [[row[i] for row in rows] for i in range(width)]


def connect_direct(datastore: PostgresDatastore) -> psycopg.Connection[Any]:
    """An autocommit connection outside the pool, for LISTEN and advisory locks."""
    configured = datastore.pool.kwargs
    params = configured() if callable(configured) else configured or {}
    kwargs = {k: v for k, v in params.items() if k != "row_factory"}
    return psycopg.connect(**kwargs, autocommit=True)


def backend_terminator(datastore: PostgresDatastore) -> Callable[[int], bool]:
    """Ends a stalled writer's session from a connection of its own
    (``ledger.storage.write_watch``)."""

    def terminate(pid: int) -> bool:
        with connect_direct(datastore) as conn:
            row = conn.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()
        return bool(row and row[0])

    return terminate


class PostgresLedgerRecorder(PostgresApplicationRecorder, LedgerStore):
    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        write_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.write_watch = WriteWatch(write_timeout_s, backend_terminator(datastore))
        self._listener: psycopg.Connection[Any] | None = None
        self._lock_conn: psycopg.Connection[Any] | None = None
        self.schema_name = datastore.schema
        self.schema = Identifier(datastore.schema)
        self.events_table = Identifier(events_table_name)
        for statement in _TABLES.strip().split(";\n"):
            if statement.strip():
                self.sql_create_statements.append(self._sql(statement))
        self.sql_create_statements += chain_postgres.create_statements(self.schema)
        self.sql_create_statements += merkle_postgres.create_statements(self.schema)
        self._create_types_once()

    def create_table(self) -> None:
        """Creates the tables, then chains any event recorded before the chain existed (the
        Merkle log integrates them when first asked: ``grow_tree``).

        A process starting while another records events can deadlock with it: ``CREATE INDEX
        IF NOT EXISTS`` share-locks its table even when the index exists, in another order
        than a writer takes its locks. PostgreSQL then rolls one side back; if it is this
        (idempotent) DDL, it is run again rather than failing the process's start."""
        for attempt in range(1, DDL_ATTEMPTS + 1):
            try:
                super().create_table()
                break
            except OperationalError as exc:
                deadlock = isinstance(exc.__cause__, psycopg.errors.DeadlockDetected)
                if not deadlock or attempt == DDL_ATTEMPTS:
                    raise
                time.sleep(0.1 * attempt)
        with self.datastore.transaction(commit=True) as curs:
            if chain_postgres.behind(curs, self.schema, self.events_table):
                chain_postgres.chain_unchained(curs, self.schema, self.events_table)

    def _create_types_once(self) -> None:
        """Wraps the library's CREATE TYPE in a check (``_CREATE_TYPE_ONCE``). The statement
        keeps "CREATE TYPE" in its text, so the library still runs it first, on its own."""
        statements = self.sql_create_statements
        for index, statement in enumerate(statements):
            text = statement.as_string()
            if "CREATE TYPE" in text and self.stored_event_type_name in text:
                statements[index] = SQL(_CREATE_TYPE_ONCE).format(
                    schema=Literal(self.schema_name),
                    name=Literal(self.stored_event_type_name),
                    create=statement,
                )

    def _sql(self, text: str) -> Composed:
        return SQL(text).format(schema=self.schema, events=self.events_table)

    @retry((InterfaceError, OperationalError), max_attempts=3, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Events, their chain links and their key, reference and receipt rows in one
        transaction that commits only if every statement succeeded. (The inherited method
        defers a Python exception until after its transaction has committed; here any
        exception rolls back.) The links are computed under the event table lock that
        ``_insert_stored_events`` takes (see ``ledger.storage.chain_postgres``).

        **No pipeline mode.** Every statement is sent whole before its result is awaited, and
        each table gets one statement however large the batch (``unnest`` of arrays). In
        pipeline mode psycopg (3.3) may stop sending with part of a large batch still in
        libpq's buffer, then wait for results the server never flushes: the backend sat
        "active / ClientRead" holding the event table's lock until killed (issue 19,
        ``tests/stall_repro.py``). The transaction is watched (``ledger.storage.write_watch``); a
        session the server ended for a timeout is an ``OperationalError``, so the batch is
        retried like one whose session the watchdog terminated."""
        try:
            return self._insert_batch(stored_events, **kwargs)
        except InternalError as exc:
            if isinstance(exc.__cause__, _SESSION_ENDED):
                raise OperationalError(str(exc)) from exc
            raise

    def _insert_batch(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with (
            self.datastore.get_connection() as conn,
            self.write_watch.writing(conn.info.backend_pid),
            conn.transaction(),
            conn.cursor() as curs,
        ):
            self._insert_events(curs, stored_events, **kwargs)
            if not stored_events:
                return []
            self._insert_stored_events(curs, stored_events, **kwargs)
            ids = self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
            assert ids is not None
            chain_postgres.append(curs, self.schema, stored_events, ids)
            return ids

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        """The inherited insert, with its rows sent as four arrays in PostgreSQL's binary
        format: the library sends one array of its composite type as text, which psycopg
        escapes value by value (a third of a batch's time in Python, measured)."""
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._sql(
                "INSERT INTO {schema}.{events} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
                "RETURNING notification_id"
            ),
            _columns(
                [(e.originator_id, e.originator_version, e.topic, e.state) for e in stored_events],
                4,
            ),
        )

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        *,
        new_keys: Sequence[WrappedKey] = (),
        new_refs: Sequence[SubjectRef] = (),
        receipts: Sequence[Receipt] = (),
        shredded: Sequence[Shredded] = (),
        **kwargs: Any,
    ) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        if new_keys:
            curs.execute(
                self._sql(
                    "INSERT INTO {schema}.subject_keys (subject_id, tenant, kek_id, wrapped) "
                    "SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bytea[])"
                ),
                _columns([(k.subject_id, k.tenant, k.kek_id, k.wrapped) for k in new_keys], 4),
            )
        if new_refs:
            curs.execute(
                self._sql(
                    "INSERT INTO {schema}.subject_refs (tenant, digest, subject_id) "
                    "SELECT * FROM unnest(%b::text[], %b::bytea[], %b::uuid[])"
                ),
                _columns([(r.tenant, r.digest, r.subject_id) for r in new_refs], 3),
            )
        if receipts:
            curs.execute(
                self._sql(
                    "INSERT INTO {schema}.ingest_receipts "
                    "(tenant, event_id, originator_id, originator_version) "
                    "SELECT * FROM unnest(%b::text[], %b::text[], %b::uuid[], %b::bigint[])"
                ),
                _columns(
                    [
                        (r.tenant, r.event_id, r.originator_id, r.originator_version)
                        for r in receipts
                    ],
                    4,
                ),
            )
        for gone in shredded:  # last: a subject new in this batch may be erased in it too
            self._shred(curs, gone)

    def _shred(self, curs: Cursor[DictRow], gone: Shredded) -> None:
        curs.execute(
            self._sql(
                "WITH gone AS (DELETE FROM {schema}.subject_refs WHERE subject_id = %s "
                "RETURNING tenant, digest) INSERT INTO {schema}.erased_refs (tenant, digest) "
                "SELECT tenant, digest FROM gone ON CONFLICT DO NOTHING"
            ),
            [gone.subject_id],
        )
        curs.execute(
            self._sql("DELETE FROM {schema}.subject_keys WHERE subject_id = %s"),
            [gone.subject_id],
        )

    def shred(self, subjects: Sequence[Shredded]) -> None:
        with (
            self.datastore.get_connection() as conn,
            self.write_watch.writing(conn.info.backend_pid),
            conn.transaction(),
            conn.cursor() as curs,
        ):
            for gone in subjects:
                self._shred(curs, gone)

    def erased_refs(self, tenant: str, digests: Sequence[bytes]) -> set[bytes]:
        if not digests:
            return set()
        rows = self._fetch(
            "SELECT digest FROM {schema}.erased_refs "
            "WHERE tenant = %s AND digest = ANY(%b::bytea[])",
            [tenant, list(digests)],
        )
        return {bytes(row["digest"]) for row in rows}

    def _fetch(self, query: str, params: Sequence[object]) -> list[DictRow]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._sql(query), params)
            return curs.fetchall()

    def recorded_receipts(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        if not keys:
            return set()
        rows = self._fetch(
            "SELECT r.tenant, r.event_id FROM {schema}.ingest_receipts r "
            "JOIN unnest(%b::text[], %b::text[]) AS k(tenant, event_id) "
            "ON r.tenant = k.tenant AND r.event_id = k.event_id",
            [[k[0] for k in keys], [k[1] for k in keys]],
        )
        return {(row["tenant"], row["event_id"]) for row in rows}

    def lookup_subjects(self, tenant: str, digests: Sequence[bytes]) -> dict[bytes, UUID]:
        if not digests:
            return {}
        rows = self._fetch(
            "SELECT digest, subject_id FROM {schema}.subject_refs "
            "WHERE tenant = %s AND digest = ANY(%b::bytea[])",
            [tenant, list(digests)],
        )
        return {bytes(row["digest"]): row["subject_id"] for row in rows}

    def wrapped_keys(self, subject_ids: Sequence[UUID]) -> dict[UUID, WrappedKey]:
        if not subject_ids:
            return {}
        rows = self._fetch(
            "SELECT subject_id, tenant, kek_id, wrapped FROM {schema}.subject_keys "
            "WHERE subject_id = ANY(%b::uuid[])",
            [list(subject_ids)],
        )
        return {
            row["subject_id"]: WrappedKey(
                row["subject_id"], row["tenant"], row["kek_id"], bytes(row["wrapped"])
            )
            for row in rows
        }

    def select_aggregates_events(
        self, ids: Sequence[UUID], after: Mapping[UUID, int] | None = None
    ) -> list[StoredEvent]:
        """One round trip for any number of aggregates."""
        if not ids:
            return []
        after = after or {}
        rows = self._fetch(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM {schema}.{events} e "
            "JOIN unnest(%b::uuid[], %b::bigint[]) AS a(id, version) "
            "ON e.originator_id = a.id AND e.originator_version > a.version "
            "ORDER BY e.originator_id, e.originator_version",
            [list(ids), [after.get(i, 0) for i in ids]],
        )
        return [
            StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            for row in rows
        ]

    def select_rows(self, start: int, limit: int, stop: int | None = None) -> list[Row]:
        """Rows as tuples in PostgreSQL's binary format, the id read as text: building a dict
        and a notification per row, then parsing hex, took longer than the hashing that
        verification does, and building a UUID per row and then its text for the hash
        longer still."""
        query = (
            "SELECT notification_id, originator_id::text, originator_version, topic, state "
            "FROM {schema}.{events} WHERE notification_id >= %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        )
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row, binary=True) as curs,
        ):
            curs.execute(self._sql(query), [start, _MAX_ID if stop is None else stop, limit])
            return curs.fetchall()

    def select_chain(self, start: int, limit: int, stop: int | None = None) -> list[Link]:
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row, binary=True) as curs,
        ):
            return chain_postgres.select_links(
                curs, self.schema, start, limit, _MAX_ID if stop is None else stop
            )

    def aggregate_rows(self, originator_id: UUID) -> list[Row]:
        query = (
            "SELECT notification_id, originator_id::text, originator_version, topic, state "
            "FROM {schema}.{events} WHERE originator_id = %s ORDER BY originator_version"
        )
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row, binary=True) as curs,
        ):
            curs.execute(self._sql(query), [originator_id])
            return curs.fetchall()

    def event_sequence(self, tenant: str, event_id: str) -> int | None:
        rows = self._fetch(
            "SELECT e.notification_id, e.state FROM {schema}.ingest_receipts r "
            "JOIN {schema}.{events} e ON e.originator_id = r.originator_id "
            "AND e.originator_version BETWEEN r.originator_version - %s AND r.originator_version "
            "WHERE r.tenant = %s AND r.event_id = %s ORDER BY e.originator_version DESC",
            [EVENTS_PER_COMMAND - 1, tenant, event_id],
        )
        found = (r["notification_id"] for r in rows if event_id_of(bytes(r["state"])) == event_id)
        return next(found, None)

    def grow_tree(self, upto: int | None = None) -> int:
        with self.datastore.transaction(commit=True) as curs:
            return merkle_postgres.integrate(curs, self.schema, self.events_table, upto)

    def tree_size(self, upto: int | None = None) -> int:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            if upto is None:
                return merkle_postgres.size(curs, self.schema)
            return merkle_postgres.size_at(curs, self.schema, upto)

    def merkle_nodes(self, keys: Iterable[merkle.Key]) -> dict[merkle.Key, bytes]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return merkle_postgres.nodes(curs, self.schema, keys)

    def merkle_level(self, level: int, start: int, limit: int) -> list[tuple[int, bytes]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return merkle_postgres.level(curs, self.schema, level, start, limit)

    def leaf_index(self, sequence: int) -> int | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return merkle_postgres.leaf_index(curs, self.schema, sequence)

    def leaf_sequence(self, index: int) -> int | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return merkle_postgres.leaf_sequence(curs, self.schema, index)

    def get_position(self, name: str) -> int:
        rows = self._fetch("SELECT position FROM {schema}.positions WHERE name = %s", [name])
        return int(rows[0]["position"]) if rows else 0

    @contextmanager
    def _watched(self) -> Iterator[Cursor[DictRow]]:
        """A write transaction the watchdog bounds (``ledger.storage.write_watch``)."""
        with (
            self.datastore.transaction(commit=True) as curs,
            self.write_watch.writing(curs.connection.info.backend_pid),
        ):
            yield curs

    def set_position(self, name: str, position: int) -> None:
        with self._watched() as curs:
            curs.execute(
                self._sql(
                    "INSERT INTO {schema}.positions (name, position) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position"
                ),
                [name, position],
            )

    def add_counts(self, counts: Mapping[tuple[str, str], int]) -> None:
        rows = [(outcome, reason, n) for (outcome, reason), n in sorted(counts.items()) if n]
        if not rows:
            return
        with self._watched() as curs:
            curs.executemany(
                self._sql(
                    "INSERT INTO {schema}.ingest_counts (outcome, reason, count) "
                    "VALUES (%s, %s, %s) ON CONFLICT (outcome, reason) "
                    "DO UPDATE SET count = {schema}.ingest_counts.count + EXCLUDED.count"
                ),
                rows,
            )

    def counts(self) -> dict[tuple[str, str], int]:
        rows = self._fetch("SELECT outcome, reason, count FROM {schema}.ingest_counts", [])
        return {(r["outcome"], r["reason"]): int(r["count"]) for r in rows}

    def wait_for_events(self, timeout: float) -> None:
        """Waits for the NOTIFY that every insert sends. The first call only starts listening
        (and returns at once), so an insert between a caller's last read and LISTEN is never
        waited past."""
        if self._listener is None or self._listener.closed:
            self._listener = connect_direct(self.datastore)
            self._listener.execute(SQL("LISTEN {}").format(Identifier(self.channel_name)))
            return
        for _ in self._listener.notifies(timeout=timeout, stop_after=1):
            pass

    def acquire_lock(self, name: str, stop: Event, *, retry_s: float = 1.0) -> bool:
        """A session-level advisory lock on a connection of its own: released when this
        process closes the store or dies, so a standby takes over."""
        while not stop.is_set():
            conn = self._lock_conn or connect_direct(self.datastore)
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s))", [f"{self.schema_name}:{name}"]
            ).fetchone()
            if row and row[0]:
                self._lock_conn = conn
                return True
            conn.close()
            stop.wait(retry_s)
        return False

    def holds_lock(self, name: str) -> bool:
        """True while the session that took the lock is alive (one lock per store)."""
        conn = self._lock_conn
        if conn is None:
            return False
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            conn.close()
            self._lock_conn = None
            return False
        return True

    def close_connections(self) -> None:
        self.write_watch.close()
        for conn in (self._listener, self._lock_conn):
            if conn is not None:
                conn.close()
        self._listener = self._lock_conn = None
