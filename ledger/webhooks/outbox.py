"""The notifier's outbox in PostgreSQL: planned requests, their deliveries and every attempt.

Rules this module keeps:

- **Planning is idempotent.** A request row is inserted once per (tenant, request event id);
  its delivery rows are inserted in the same transaction, and only when the request row is
  new. Seeing the same ``KeysShredded`` again (a relay republish, a re-consumed partition,
  a second notifier) plans nothing.
- **A delivery is worked on by one process at a time.** :meth:`Outbox.claim` picks the most
  overdue pending delivery with ``FOR UPDATE SKIP LOCKED`` (concurrent notifiers take
  different rows), records the attempt and leases the delivery (``next_attempt_at`` moves
  past the HTTP timeout) in one short transaction; the request is sent after that commit.
  A crash mid-request leaves the attempt recorded without an outcome; the lease expires and
  the next attempt carries the next number.
- **Outcomes only move forward.** :meth:`Outbox.finish` writes the attempt's outcome and moves
  the delivery on only if it still holds the lease (no later attempt was claimed).
  ``pending`` becomes ``delivered`` (2xx), ``failed`` (after the last attempt) or
  ``no_endpoint`` (the endpoint was removed or disabled meanwhile); none of them changes again.
- **A request is finalized once every delivery is settled**, under the request row's lock,
  and marked recorded in the transaction that held that lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import ConnectionPool

from ledger.webhooks import notice
from ledger.webhooks.endpoints import enabled_kinds
from ledger.webhooks.retry import RetryPolicy
from ledger.webhooks.tables import q

DELIVERY_KEYS = ("recipient", "delivery_id", "status", "attempts", "last_status_code")


@dataclass(frozen=True)
class Claim:
    """A delivery taken for one attempt. ``settled`` is set instead when there was nothing to
    send: ``no_endpoint`` (endpoint gone) or ``failed`` (the last attempt was interrupted)."""

    delivery_id: UUID
    tenant: str
    recipient: str
    body: str
    attempt: int
    url: str | None
    wrapped_secret: bytes | None
    kek_id: str | None
    settled: str | None = None


@dataclass(frozen=True)
class Result:
    """What one attempt got: a status code, or the class of the error that prevented one."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class ReadyRequest:
    """A request whose deliveries are all settled: what ``ProcessorsNotified`` records (for
    an erasure; a change notice records nothing more)."""

    tenant: str
    request_event_id: str
    subject_id: UUID
    deliveries: list[dict[str, object]]
    settled_at: datetime
    notice_type: str = notice.EVENT_TYPE


class Outbox:
    def __init__(
        self,
        pool: ConnectionPool[psycopg.Connection[Any]],
        schema: str,
        policy: RetryPolicy,
        *,
        lease: timedelta,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.policy = policy
        self.lease = lease

    def _q(self, text: str) -> Any:
        return q(text, self.schema)

    def plan(
        self, erasures: Sequence[notice.Erasure], now: datetime
    ) -> list[tuple[notice.Erasure, list[notice.Planned]]]:
        """Plans the erasures not planned before, in one transaction; returns those."""
        planned = []
        with self.pool.connection() as conn, conn.transaction():
            endpoints: dict[str, dict[str, str]] = {}
            for erasure in erasures:
                if not self._insert_request(conn, erasure, now):
                    continue
                if erasure.tenant not in endpoints:
                    endpoints[erasure.tenant] = enabled_kinds(conn, self.schema, erasure.tenant)
                deliveries = notice.plan(erasure, endpoints[erasure.tenant])
                self._insert_deliveries(conn, erasure, deliveries, now)
                planned.append((erasure, deliveries))
        return planned

    def _insert_request(
        self, conn: psycopg.Connection[Any], erasure: notice.Erasure, now: datetime
    ) -> bool:
        inserted = conn.execute(
            self._q(
                "INSERT INTO {s}.webhook_requests (tenant, request_event_id, subject_id,"
                " ledger_sequence, erased_at, planned_at, check_after, notice_type)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
            ),
            [
                erasure.tenant,
                erasure.request_event_id,
                erasure.subject_id,
                erasure.sequence,
                erasure.erased_at,
                now,
                now,
                erasure.notice_type,
            ],
        ).rowcount
        return bool(inserted)

    def _insert_deliveries(
        self,
        conn: psycopg.Connection[Any],
        erasure: notice.Erasure,
        deliveries: list[notice.Planned],
        now: datetime,
    ) -> None:
        rows = [
            (
                d.delivery_id,
                erasure.tenant,
                erasure.request_event_id,
                d.recipient,
                d.body,
                d.status,
                now,
                now if d.status == "no_endpoint" else None,
            )
            for d in deliveries
        ]
        with conn.cursor() as cur:
            cur.executemany(
                self._q(
                    "INSERT INTO {s}.webhook_deliveries (delivery_id, tenant, request_event_id,"
                    " recipient, body, status, next_attempt_at, settled_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                ),
                rows,
            )

    def claim(self, now: datetime) -> Claim | None:
        """Takes the most overdue pending delivery for one attempt (see the module rules)."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                self._q(
                    "SELECT d.delivery_id, d.tenant, d.recipient, d.body, d.attempts,"
                    " e.url, e.wrapped_secret, e.kek_id"
                    " FROM {s}.webhook_deliveries d LEFT JOIN {s}.webhook_endpoints e"
                    " ON e.tenant = d.tenant AND e.name = d.recipient AND e.enabled"
                    " WHERE d.status = 'pending' AND d.next_attempt_at <= %s"
                    " ORDER BY d.next_attempt_at LIMIT 1 FOR UPDATE OF d SKIP LOCKED"
                ),
                [now],
            ).fetchone()
            if row is None:
                return None
            delivery_id, tenant, recipient, body, attempts, url, wrapped, kek_id = row
            claim = Claim(delivery_id, tenant, recipient, body, attempts + 1, url, wrapped, kek_id)
            if url is None or self.policy.gives_up_after(attempts):
                settled = "no_endpoint" if url is None else "failed"
                self._settle(conn, delivery_id, settled, now)
                return Claim(
                    delivery_id, tenant, recipient, body, attempts, None, None, None, settled
                )
            self._start_attempt(conn, claim, now)
            return claim

    def _settle(
        self, conn: psycopg.Connection[Any], delivery_id: UUID, status: str, now: datetime
    ) -> None:
        conn.execute(
            self._q(
                "UPDATE {s}.webhook_deliveries SET status = %s, settled_at = %s"
                " WHERE delivery_id = %s"
            ),
            [status, now, delivery_id],
        )

    def _start_attempt(self, conn: psycopg.Connection[Any], claim: Claim, now: datetime) -> None:
        conn.execute(
            self._q(
                "UPDATE {s}.webhook_deliveries SET attempts = %s, next_attempt_at = %s"
                " WHERE delivery_id = %s"
            ),
            [claim.attempt, now + self.lease, claim.delivery_id],
        )
        conn.execute(
            self._q(
                "INSERT INTO {s}.webhook_attempts (delivery_id, attempt, at) VALUES (%s, %s, %s)"
            ),
            [claim.delivery_id, claim.attempt, now],
        )

    def finish(self, claim: Claim, result: Result, now: datetime) -> str:
        """Records the attempt's outcome; returns the delivery's status after it
        (``superseded`` if a later attempt was claimed meanwhile)."""
        status, next_at = self._after(claim, result, now)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                self._q(
                    "UPDATE {s}.webhook_attempts SET status_code = %s, error = %s,"
                    " duration_ms = %s WHERE delivery_id = %s AND attempt = %s"
                ),
                [
                    result.status_code,
                    result.error,
                    result.duration_ms,
                    claim.delivery_id,
                    claim.attempt,
                ],
            )
            moved = conn.execute(
                self._q(
                    "UPDATE {s}.webhook_deliveries SET status = %s, last_status_code = %s,"
                    " next_attempt_at = %s, settled_at = %s"
                    " WHERE delivery_id = %s AND attempts = %s AND status = 'pending'"
                ),
                [
                    status,
                    result.status_code,
                    next_at,
                    None if status == "pending" else now,
                    claim.delivery_id,
                    claim.attempt,
                ],
            ).rowcount
        return status if moved else "superseded"

    def _after(self, claim: Claim, result: Result, now: datetime) -> tuple[str, datetime]:
        if result.delivered:
            return "delivered", now
        if self.policy.gives_up_after(claim.attempt):
            return "failed", now
        return "pending", now + self.policy.delay(claim.attempt)

    def finalize_next(
        self, now: datetime, record: Callable[[ReadyRequest], bool], *, retry_at: datetime
    ) -> ReadyRequest | None:
        """Locks one request whose deliveries are all settled and calls ``record`` with it, in
        one transaction; None if no request was ready. ``record`` returns True when the ledger
        holds the step (the request is marked recorded) or False when the ledger refused it
        (the request waits until ``retry_at``). If ``record`` raises, nothing changes."""
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                self._q(
                    "SELECT r.tenant, r.request_event_id, r.subject_id, r.planned_at,"
                    " r.notice_type FROM {s}.webhook_requests r"
                    " WHERE r.recorded_at IS NULL AND r.check_after <= %s AND NOT EXISTS ("
                    "  SELECT 1 FROM {s}.webhook_deliveries d WHERE d.tenant = r.tenant"
                    "  AND d.request_event_id = r.request_event_id AND d.status = 'pending')"
                    " ORDER BY r.check_after LIMIT 1 FOR UPDATE OF r SKIP LOCKED"
                ),
                [now],
            ).fetchone()
            if row is None:
                return None
            ready = self._ready(conn, *row)
            if record(ready):
                update, moment = "UPDATE {s}.webhook_requests SET recorded_at = %s", now
            else:
                update, moment = "UPDATE {s}.webhook_requests SET check_after = %s", retry_at
            conn.execute(
                self._q(update + " WHERE tenant = %s AND request_event_id = %s"),
                [moment, ready.tenant, ready.request_event_id],
            )
        return ready

    def _ready(
        self,
        conn: psycopg.Connection[Any],
        tenant: str,
        request_event_id: str,
        subject_id: UUID,
        planned_at: datetime,
        notice_type: str,
    ) -> ReadyRequest:
        rows = conn.execute(
            self._q(
                "SELECT recipient, delivery_id, status, attempts, last_status_code, settled_at"
                " FROM {s}.webhook_deliveries WHERE tenant = %s AND request_event_id = %s"
                " ORDER BY recipient"
            ),
            [tenant, request_event_id],
        ).fetchall()
        deliveries: list[dict[str, object]] = [
            dict(zip(DELIVERY_KEYS, (r[0], str(r[1]), *r[2:5]), strict=True)) for r in rows
        ]
        settled_at = max((r[5] for r in rows), default=planned_at)
        return ReadyRequest(
            tenant, request_event_id, subject_id, deliveries, settled_at, notice_type
        )
