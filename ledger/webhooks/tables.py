"""The notifier's tables, in the ledger's schema. Created idempotently, under a lock, so
processes starting together do not race on the DDL.

- ``webhook_endpoints``: per tenant and name (a recipient as disclosures name it, or a
  processor), the URL, the kind and the signing secret wrapped by the KEK.
- ``webhook_requests``: one row per carried-out erasure request, or per change notice
  (``notice_type``); ``recorded_at`` is set once ``ProcessorsNotified`` is in the ledger (for
  a change notice: once its deliveries are settled).
- ``webhook_deliveries``: one row per target of a request, with its state.
- ``webhook_attempts``: one row per attempt, written before the request is sent.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.sql import SQL, Composed, Identifier

_DDL = """
CREATE TABLE IF NOT EXISTS {s}.webhook_endpoints (
    tenant text NOT NULL,
    name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('recipient', 'processor')),
    url text NOT NULL,
    kek_id text NOT NULL,
    wrapped_secret bytea NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS {s}.webhook_requests (
    tenant text NOT NULL,
    request_event_id text NOT NULL,
    subject_id uuid NOT NULL,
    ledger_sequence bigint NOT NULL,
    erased_at timestamptz NOT NULL,
    planned_at timestamptz NOT NULL,
    check_after timestamptz NOT NULL,
    recorded_at timestamptz,
    PRIMARY KEY (tenant, request_event_id)
);
ALTER TABLE {s}.webhook_requests ADD COLUMN IF NOT EXISTS notice_type text NOT NULL
    DEFAULT 'subject.erased';
CREATE INDEX IF NOT EXISTS webhook_requests_open
    ON {s}.webhook_requests (check_after) WHERE recorded_at IS NULL;
CREATE TABLE IF NOT EXISTS {s}.webhook_deliveries (
    delivery_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    request_event_id text NOT NULL,
    recipient text NOT NULL,
    body text NOT NULL,
    status text NOT NULL
        CHECK (status IN ('pending', 'delivered', 'failed', 'no_endpoint')),
    attempts integer NOT NULL DEFAULT 0,
    last_status_code integer,
    next_attempt_at timestamptz NOT NULL,
    settled_at timestamptz,
    FOREIGN KEY (tenant, request_event_id) REFERENCES {s}.webhook_requests
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON {s}.webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_request
    ON {s}.webhook_deliveries (tenant, request_event_id);
CREATE TABLE IF NOT EXISTS {s}.webhook_attempts (
    delivery_id uuid NOT NULL REFERENCES {s}.webhook_deliveries,
    attempt integer NOT NULL,
    at timestamptz NOT NULL,
    status_code integer,
    error text,
    duration_ms integer,
    PRIMARY KEY (delivery_id, attempt)
)
"""


def q(text: str, schema: str) -> Composed:
    """SQL text with ``{s}`` bound to the schema, quoted."""
    return SQL(text).format(s=Identifier(schema))


def create_tables(conn: psycopg.Connection[Any], schema: str) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"webhooks:{schema}"])
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))
        for statement in _DDL.split(";\n"):
            if statement.strip():
                conn.execute(q(statement, schema))
