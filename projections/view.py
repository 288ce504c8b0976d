"""What every projection's view is: tables in a schema of its own, plus a tracking row.

Rules every view keeps:

- **Exactly once.** A batch of events is applied in one transaction that also moves the
  view's tracking position (the `eventsourcing` tracking record). The transaction first reads
  that position under a row lock and skips every event at or below it, so a redelivered
  batch, a second runner, or a runner that raced a rebuild's swap never applies an event twice.
- **A schema per view.** A view's tables live in ``<ledger schema>_<view name>``. A rebuild
  fills ``..._rebuild`` from the first event and swaps the two schemas in one transaction,
  so readers see the old view or the new one, never a half-built one.
- **Bounded.** The batch's transaction is watched (``ledger.storage.write_watch``): open past
  ``LEDGER_WRITE_TIMEOUT``, its session is terminated and the batch is applied again.
- **No plaintext personal data.** Personal columns hold the event's sealed value
  (:meth:`Sealed.to_bytes`); they open only with the subject's key, which the view never has.
- **Commits do not wait for the disk.** A batch's transaction runs with
  ``synchronous_commit = off``: the view is derived from the ledger, whose own commits do
  wait, and its rows move with its tracking position in one transaction, so a crash that loses
  the last few view commits only sets the view back to an earlier position, from which it
  applies the same events again. Waiting for the flush was most of a small batch's time.
- **Commits are announced.** A batch's transaction ends with ``NOTIFY`` on the channel
  :func:`commit_channel` names, the new position as payload: PostgreSQL delivers it when, and
  only if, the batch commits. Whoever must know when the view moved listens there instead of
  polling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from ledger.domain.values import Sealed
from ledger.process.settings import Settings
from ledger.storage.postgres import backend_terminator
from ledger.storage.write_watch import WriteWatch

APPLICATION_NAME = "Ledger"  # the tracked application: LedgerReader.name
REBUILD_SUFFIX = "_rebuild"

Handler = Callable[[Cursor[DictRow], Any], None]


def view_schema(base_schema: str, view_name: str) -> str:
    return f"{base_schema}_{view_name}"


def commit_channel(schema: str) -> str:
    """The channel a view in ``schema`` notifies when a batch commits (payload: the view's
    new position)."""
    return f"{schema}_committed"


def sealed_bytes(value: Sealed | None) -> bytes | None:
    return None if value is None else value.to_bytes()


class View(PostgresTrackingRecorder):
    """Base of the views. Subclasses list their DDL and map event classes to handlers."""

    name: ClassVar[str]
    ddl: ClassVar[str]  # statements separated by ";\n", with {schema} placeholders
    # Statements only a live view needs, for the API that reads it (a replay's view, read
    # a few times by one auditor, is spared their cost on every batch).
    live_ddl: ClassVar[str] = ""

    def __init__(
        self, datastore: PostgresDatastore, settings: Settings, *, live: bool = True
    ) -> None:
        super().__init__(datastore, tracking_table_name="tracking")
        self.settings = settings
        self.write_watch = WriteWatch(
            settings.write_timeout.total_seconds(), backend_terminator(datastore)
        )
        self.schema = Identifier(datastore.schema)
        self.sql_create_statements.insert(
            0, SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self.schema)
        )
        self._statements: dict[tuple[str, tuple[tuple[str, str], ...]], bytes] = {}
        for statement in (self.ddl + ";\n" + (self.live_ddl if live else "")).split(";\n"):
            if statement.strip():
                self.sql_create_statements.append(self._compose(statement))
        self._position_for_update = self.sql(
            "SELECT notification_id FROM {schema}.tracking WHERE application_name = %s FOR UPDATE"
        )
        self.handlers: dict[type, Handler] = self.event_handlers()
        self._channel = commit_channel(datastore.schema)
        self._before_commit = (
            b"SELECT set_config('synchronous_commit', 'off', true), pg_notify(%s, %s)"
        )
        # The position the batch in hand commits at: views that stamp the rows a batch
        # changes (so a reader can ask what changed after a position) read it here.
        self.batch_position = 0

    def create_table(self) -> None:
        """The library's ``create_table``, which first reads the tracking table to see whether
        it needs migrating — an error (logged by PostgreSQL) in a new schema, where there is
        no such table and nothing to migrate. There, it is skipped."""
        with self.datastore.get_connection() as conn:
            found = conn.execute(
                "SELECT FROM pg_tables WHERE schemaname = %s AND tablename = %s",
                [self.datastore.schema, self.tracking_table_name],
            ).fetchone()
        if found is not None:
            super().create_table()
        else:
            super(PostgresTrackingRecorder, self).create_table()

    def sql(self, text: str, **tables: str) -> bytes:
        """The statement with the view's schema (and ``tables``) filled in, composed once per
        view and kept as bytes: handlers run it for every event, so composing it each time
        cost more than the database spent on some of them."""
        key = (text, tuple(sorted(tables.items())))
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = self._compose(text, **tables).as_bytes(None)
        return found

    def _compose(self, text: str, **tables: str) -> Composed:
        names = {k: Identifier(v) for k, v in tables.items()}
        return SQL(text).format(schema=self.schema, **names)

    def event_handlers(self) -> dict[type, Handler]:
        raise NotImplementedError

    def position(self) -> int:
        return self.max_tracking_id(APPLICATION_NAME) or 0

    def process_batch(self, batch: Sequence[tuple[Any, Tracking]]) -> int:
        """Applies the events after the view's position and moves it, in one transaction.
        Returns the position after the batch."""
        with (
            self.datastore.get_connection() as conn,
            self.write_watch.writing(conn.info.backend_pid),
            conn.transaction(),
            conn.cursor() as curs,
        ):
            curs.execute(self._position_for_update, [APPLICATION_NAME])
            row = curs.fetchone()
            position = int(row["notification_id"]) if row else 0
            todo = [(e, t) for e, t in batch if t.notification_id > position]
            if not todo:
                return position
            self.batch_position = todo[-1][1].notification_id
            self.apply(curs, [event for event, _ in todo])
            # Outside any pipeline: recording the position fetches its result, and a fetch on
            # a cursor with results still pending in the pipeline can read the wrong one
            # ("the last operation didn't produce records"), now and then, under load.
            self._insert_tracking(curs, todo[-1][1])
            position = todo[-1][1].notification_id
            # Read at commit, so set last, with the announcement in the same round trip.
            curs.execute(self._before_commit, [self._channel, str(position)])
            return position

    def apply(self, curs: Cursor[DictRow], events: Sequence[Any]) -> None:
        """Applies events (new to the view, in ledger order) inside the batch's transaction:
        by default each one's handler, pipelined. A view whose handlers would cost several
        statements per event folds the batch instead (``RecordsView``)."""
        with curs.connection.pipeline():
            for event in events:
                handler = self.handlers.get(type(event))
                if handler is not None:
                    handler(curs, event)

    def maintain(self, now: datetime | None = None) -> int:
        """Periodic upkeep (a retention sweep) as of ``now`` (default: the database's clock;
        a replay passes its instant); returns how many rows it removed."""
        return 0
