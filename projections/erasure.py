"""Keys and erasures: per subject, the state of its data key, its legal holds and its erasure
requests as they move through the workflow.

Tables (schema ``<ledger>_erasure``):

- ``subject_keys``: ``active`` from the subject's registration (its key is created with it);
  ``shredded`` from ``KeysShredded`` on, since the time the ledger recorded it (the key was
  deleted in that transaction).
- ``legal_holds``: the holds a subject is under now (placed, not yet released).
- ``erasure_requests``: every recorded request, its due date — one month after the request
  (GDPR art. 12(3)) — and its status: ``requested`` → ``shredded`` → ``notified`` →
  ``completed``, or ``refused`` (with the reason and the holds that caused it). A request that
  is neither completed nor refused after its due date is overdue.
- ``requests``: the register of every request, erasure requests included
  (``projections.register``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from ledger.domain.subject import Subject
from projections.register import REGISTER_DDL, RegisterFold
from projections.view import Handler, View


class ErasureView(View, RegisterFold):
    name = "erasure"
    ddl = (
        """
CREATE TABLE IF NOT EXISTS {schema}.subject_keys (
    subject_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    state text NOT NULL CHECK (state IN ('active', 'shredded')),
    since timestamptz NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.legal_holds (
    subject_id uuid NOT NULL,
    tenant text NOT NULL,
    hold_reference text NOT NULL,
    placed_at timestamptz NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (subject_id, hold_reference)
);
CREATE TABLE IF NOT EXISTS {schema}.erasure_requests (
    tenant text NOT NULL,
    event_id text NOT NULL,
    subject_id uuid NOT NULL,
    source text NOT NULL,
    requested_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    due_by timestamptz NOT NULL,
    status text NOT NULL,
    status_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
ALTER TABLE {schema}.erasure_requests ADD COLUMN IF NOT EXISTS refusal_reason text;
ALTER TABLE {schema}.erasure_requests ADD COLUMN IF NOT EXISTS hold_references text[];
ALTER TABLE {schema}.erasure_requests ADD COLUMN IF NOT EXISTS deliveries jsonb;
CREATE INDEX IF NOT EXISTS erasure_requests_by_subject
    ON {schema}.erasure_requests (subject_id);
CREATE INDEX IF NOT EXISTS erasure_requests_unsettled
    ON {schema}.erasure_requests (tenant, due_by) WHERE status NOT IN ('completed', 'refused');
"""
        + REGISTER_DDL
    )

    def event_handlers(self) -> dict[type, Handler]:
        return {
            Subject.Registered: self.subject_registered,
            Subject.ErasureRequested: self.erasure_requested,
            Subject.ErasureRefused: self.erasure_refused,
            Subject.KeysShredded: self.keys_shredded,
            Subject.ProcessorsNotified: self.processors_notified,
            Subject.ErasureCompleted: self.erasure_completed,
            Subject.LegalHoldPlaced: self.legal_hold_placed,
            Subject.LegalHoldReleased: self.legal_hold_released,
            **self.register_handlers(),
        }

    def apply(self, curs: Cursor[DictRow], events: Sequence[Any]) -> None:
        """A batch's registrations (most of its events) in one statement, then the rest one
        by one in ledger order, pipelined: a subject's registration comes before any other
        event of it."""
        registered = [e for e in events if type(e) is Subject.Registered]
        if registered:
            curs.execute(
                self.sql(
                    "INSERT INTO {schema}.subject_keys (subject_id, tenant, state, since, "
                    "created_at) SELECT s, t, 'active', at, at FROM unnest(%b::uuid[], "
                    "%b::text[], %b::timestamptz[]) AS r(s, t, at) "
                    "ON CONFLICT (subject_id) DO NOTHING"
                ),
                [
                    [e.originator_id for e in registered],
                    [e.tenant for e in registered],
                    [e.timestamp for e in registered],
                ],
            )
        rest = [e for e in events if type(e) is not Subject.Registered and type(e) in self.handlers]
        if rest:
            with curs.connection.pipeline():
                for e in rest:
                    self.handlers[type(e)](curs, e)

    def subject_registered(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.subject_keys (subject_id, tenant, state, since, created_at) "
                "VALUES (%s, %s, 'active', %s, %s) ON CONFLICT (subject_id) DO NOTHING"
            ),
            [e.originator_id, e.tenant, e.timestamp, e.timestamp],
        )

    def erasure_requested(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.erasure_requests (tenant, event_id, subject_id, source, "
                "requested_at, recorded_at, due_by, status, status_at) "
                "VALUES (%(tenant)s, %(event_id)s, %(subject)s, %(source)s, %(at)s, "
                "%(recorded)s, %(at)s + interval '1 month', 'requested', %(recorded)s) "
                "ON CONFLICT (tenant, event_id) DO NOTHING"
            ),
            {
                "tenant": e.tenant,
                "event_id": e.event_id,
                "subject": e.originator_id,
                "source": e.source,
                "at": e.occurred_at,
                "recorded": e.timestamp,
            },
        )
        self.erasure_request_opened(curs, e)

    def _status(self, curs: Cursor[DictRow], e: Any, status: str, **columns: object) -> None:
        sets = "".join(f", {name} = %({name})s" for name in columns)
        curs.execute(
            self.sql(
                "UPDATE {schema}.erasure_requests SET status = %(status)s, status_at = %(at)s"
                + sets
                + " WHERE tenant = %(tenant)s AND event_id = %(request)s"
            ),
            {
                "status": status,
                "at": e.timestamp,
                "tenant": e.tenant,
                "request": e.request_event_id,
                **columns,
            },
        )

    def erasure_refused(self, curs: Cursor[DictRow], e: Any) -> None:
        self._status(curs, e, "refused", refusal_reason=e.reason, hold_references=e.hold_references)
        self.settle(curs, e, e.request_event_id, "refused", None, e.reason)

    def keys_shredded(self, curs: Cursor[DictRow], e: Any) -> None:
        self._status(curs, e, "shredded")
        self.close_by_erasure(curs, e)
        curs.execute(
            self.sql(
                "UPDATE {schema}.subject_keys SET state = 'shredded', since = %s "
                "WHERE subject_id = %s"
            ),
            [e.timestamp, e.originator_id],
        )

    def processors_notified(self, curs: Cursor[DictRow], e: Any) -> None:
        self._status(curs, e, "notified", deliveries=Jsonb(e.deliveries))

    def erasure_completed(self, curs: Cursor[DictRow], e: Any) -> None:
        self._status(curs, e, "completed")
        self.settle(curs, e, e.request_event_id, "fulfilled", e.event_id, None)

    def legal_hold_placed(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "INSERT INTO {schema}.legal_holds "
                "(subject_id, tenant, hold_reference, placed_at, event_id) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
            ),
            [e.originator_id, e.tenant, e.hold_reference, e.occurred_at, e.event_id],
        )

    def legal_hold_released(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "DELETE FROM {schema}.legal_holds WHERE subject_id = %s AND hold_reference = %s"
            ),
            [e.originator_id, e.hold_reference],
        )
