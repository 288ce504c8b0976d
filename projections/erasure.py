"""Keys and erasures: per subject, the state of its data key and its erasure requests.

Tables (schema ``<ledger>_erasure``):

- ``subject_keys``: ``active`` from the subject's registration (its key is created with it);
  ``shredded`` once the shredding step of the erasure workflow is recorded.
- ``erasure_requests``: every recorded request, its status (``requested`` until the workflow
  moves it on) and the date it is due by: one month after the request (GDPR art. 12(3)).
"""

from __future__ import annotations

from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

from ledger.domain.subject import Subject
from projections.view import Handler, View


class ErasureView(View):
    name = "erasure"
    ddl = """
CREATE TABLE IF NOT EXISTS {schema}.subject_keys (
    subject_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    state text NOT NULL CHECK (state IN ('active', 'shredded')),
    since timestamptz NOT NULL,
    created_at timestamptz NOT NULL
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
CREATE INDEX IF NOT EXISTS erasure_requests_by_subject
    ON {schema}.erasure_requests (subject_id);
CREATE INDEX IF NOT EXISTS erasure_requests_open
    ON {schema}.erasure_requests (tenant, due_by) WHERE status <> 'completed'
"""

    def event_handlers(self) -> dict[type, Handler]:
        return {
            Subject.Registered: self.subject_registered,
            Subject.ErasureRequested: self.erasure_requested,
        }

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
