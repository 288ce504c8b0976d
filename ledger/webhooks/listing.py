"""Read-only views of the outbox for operators (``ledger webhooks deliveries|attempts``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from ledger.webhooks.tables import q


@dataclass(frozen=True)
class DeliveryRow:
    delivery_id: UUID
    tenant: str
    subject_id: UUID
    request_event_id: str
    recipient: str
    status: str
    attempts: int
    last_status_code: int | None
    next_attempt_at: datetime | None  # only while pending
    settled_at: datetime | None
    recorded_at: datetime | None  # when ProcessorsNotified was seen in the ledger


@dataclass(frozen=True)
class AttemptRow:
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int | None  # None: interrupted (the process stopped during the request)


def deliveries(
    conn: psycopg.Connection[Any], schema: str, *, tenant: str | None = None, limit: int = 200
) -> list[DeliveryRow]:
    """The most recently planned requests' deliveries first."""
    rows = conn.execute(
        q(
            "SELECT d.delivery_id, d.tenant, r.subject_id, d.request_event_id, d.recipient,"
            " d.status, d.attempts, d.last_status_code,"
            " CASE WHEN d.status = 'pending' THEN d.next_attempt_at END,"
            " d.settled_at, r.recorded_at"
            " FROM {s}.webhook_deliveries d JOIN {s}.webhook_requests r"
            " USING (tenant, request_event_id)"
            " WHERE %(tenant)s::text IS NULL OR d.tenant = %(tenant)s"
            " ORDER BY r.planned_at DESC, d.tenant, d.request_event_id, d.recipient"
            " LIMIT %(limit)s",
            schema,
        ),
        {"tenant": tenant, "limit": limit},
    ).fetchall()
    return [DeliveryRow(*row) for row in rows]


def attempts(conn: psycopg.Connection[Any], schema: str, delivery_id: UUID) -> list[AttemptRow]:
    rows = conn.execute(
        q(
            "SELECT attempt, at, status_code, error, duration_ms FROM {s}.webhook_attempts"
            " WHERE delivery_id = %s ORDER BY attempt",
            schema,
        ),
        [delivery_id],
    ).fetchall()
    return [AttemptRow(*row) for row in rows]
