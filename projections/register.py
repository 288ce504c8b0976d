"""The register of requests (GDPR art. 12(3)): the erasure view's fold of every request a
subject made, erasure requests included.

Table ``requests`` (in the erasure view's schema), one row per request: its kind, channel,
whether the requester's identity is verified, when it arrived, its due date — one month after
it arrived, plus the months it was extended (``make_interval``: a month is a calendar month) —
and its status, ``open`` until ``fulfilled`` or ``refused``, with the event that answered it or
the sealed reason for a refusal. An erasure request is the row of its ``ErasureRequested``: its
status follows the workflow (``ErasureCompleted`` fulfils it, ``ErasureRefused`` refuses it with
the code ``legal_hold``), so the register and the erasure status can never disagree. A
subject's other requests still open when its keys are shredded are ``closed`` by the erasure
(code ``subject_erased``, answered by the ``KeysShredded`` event): nothing is left to answer
them with, and no one can reach them by reference any more. A request open after its due date
is overdue; one due within :data:`DUE_SOON` is due soon.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from ledger.domain.subject import Subject
from projections.view import Handler, sealed_bytes

DUE_SOON: Final = timedelta(days=7)
REGISTER_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.requests (
    tenant text NOT NULL,
    request_id text NOT NULL,
    subject_id uuid NOT NULL,
    kind text NOT NULL,
    channel text NOT NULL,
    identity_verified boolean NOT NULL,
    received_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    extended_months int NOT NULL DEFAULT 0,
    extensions jsonb NOT NULL DEFAULT '[]',
    due_at timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'fulfilled', 'refused', 'closed')),
    settled_at timestamptz,
    resolution_event_id text,
    refusal_code text,
    details bytea,
    reason bytea,
    PRIMARY KEY (tenant, request_id)
);
CREATE INDEX IF NOT EXISTS requests_by_subject ON {schema}.requests (subject_id);
CREATE INDEX IF NOT EXISTS requests_open ON {schema}.requests (tenant, due_at)
    WHERE status = 'open'
"""
_OPEN = (
    "INSERT INTO {schema}.requests (tenant, request_id, subject_id, kind, channel, "
    "identity_verified, received_at, recorded_at, due_at, status, details) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s + interval '1 month', 'open', %s) "
    "ON CONFLICT (tenant, request_id) DO NOTHING"
)


class RegisterFold:
    """Handlers for the register's events; mixed into the erasure view, which supplies
    ``sql``."""

    def sql(self, text: str, **tables: str) -> bytes:
        raise NotImplementedError  # the view's

    def register_handlers(self) -> dict[type, Handler]:
        return {
            Subject.RequestOpened: self.request_opened,
            Subject.RequestIdentityVerified: self.request_verified,
            Subject.RequestExtended: self.request_extended,
            Subject.RequestCompleted: self.request_completed,
        }

    def request_opened(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(_OPEN),
            [
                e.tenant,
                e.event_id,
                e.originator_id,
                e.kind,
                e.channel,
                e.identity_verified,
                e.occurred_at,
                e.timestamp,
                e.occurred_at,
                sealed_bytes(e.details),
            ],
        )

    def erasure_request_opened(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(_OPEN),
            [
                e.tenant,
                e.event_id,
                e.originator_id,
                "ERASURE",
                e.source,
                False,
                e.occurred_at,
                e.timestamp,
                e.occurred_at,
                None,
            ],
        )

    def request_verified(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "UPDATE {schema}.requests SET identity_verified = true "
                "WHERE tenant = %s AND request_id = %s"
            ),
            [e.tenant, e.request_id],
        )

    def request_extended(self, curs: Cursor[DictRow], e: Any) -> None:
        extension = {"event_id": e.event_id, "months": e.months, "reason": e.extension_reason}
        curs.execute(
            self.sql(
                "UPDATE {schema}.requests SET extended_months = extended_months + %(months)s, "
                "due_at = received_at + make_interval(months => 1 + extended_months + "
                "%(months)s), extensions = extensions || %(extension)s "
                "WHERE tenant = %(tenant)s AND request_id = %(request)s"
            ),
            {
                "months": e.months,
                "extension": Jsonb([extension]),
                "tenant": e.tenant,
                "request": e.request_id,
            },
        )

    def request_completed(self, curs: Cursor[DictRow], e: Any) -> None:
        status = "fulfilled" if e.outcome == "FULFILLED" else "refused"
        self.settle(curs, e, e.request_id, status, e.resolved_by_event_id or None, None, e.reason)

    def close_by_erasure(self, curs: Cursor[DictRow], e: Any) -> None:
        curs.execute(
            self.sql(
                "UPDATE {schema}.requests SET status = 'closed', settled_at = %s, "
                "resolution_event_id = %s, refusal_code = 'subject_erased' "
                "WHERE tenant = %s AND subject_id = %s AND status = 'open' AND kind <> 'ERASURE'"
            ),
            [e.occurred_at, e.event_id, e.tenant, e.originator_id],
        )

    def settle(
        self,
        curs: Cursor[DictRow],
        e: Any,
        request_id: str,
        status: str,
        resolution: str | None,
        code: str | None,
        reason: Any = None,
    ) -> None:
        curs.execute(
            self.sql(
                "UPDATE {schema}.requests SET status = %s, settled_at = %s, "
                "resolution_event_id = %s, refusal_code = %s, reason = %s "
                "WHERE tenant = %s AND request_id = %s AND status = 'open'"
            ),
            [status, e.occurred_at, resolution, code, sealed_bytes(reason), e.tenant, request_id],
        )
