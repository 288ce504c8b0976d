"""The notifier's outbox on a real PostgreSQL: idempotent planning, claims that split work,
leases that survive a crash, retries that end, and finalization once everything settled.
Times are passed in, so nothing here sleeps."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from ledger.keys.crypto import LocalKek, new_secret
from ledger.process.settings import Settings
from ledger.webhooks import endpoints, listing, notice
from ledger.webhooks.outbox import Outbox, ReadyRequest, Result
from ledger.webhooks.retry import RetryPolicy
from ledger.webhooks.tables import create_tables

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
POLICY = RetryPolicy(max_attempts=3, base=timedelta(seconds=10), max_delay=timedelta(minutes=5))
OK = Result(200, None, 3)
DOWN = Result(503, None, 3)


@pytest.fixture
def schema(settings_db_only: Settings) -> Iterator[tuple[str, str]]:
    url, name = settings_db_only.require_database(), settings_db_only.database_schema
    with psycopg.connect(url, autocommit=True) as conn:
        create_tables(conn, name)
        kek = LocalKek(new_secret(), "kek-1")
        endpoints.add(
            conn,
            name,
            kek,
            tenant="acme",
            name="mailer-inc",
            url="https://m.example/h",
            kind="recipient",
        )
        endpoints.add(
            conn,
            name,
            kek,
            tenant="acme",
            name="payroll",
            url="https://p.example/h",
            kind="processor",
        )
    yield url, name


@pytest.fixture
def outbox(schema: tuple[str, str]) -> Iterator[Outbox]:
    pool: ConnectionPool[Any] = ConnectionPool(schema[0], min_size=1, max_size=3, open=True)
    yield Outbox(pool, schema[1], POLICY, lease=LEASE)
    pool.close()


def erasure(request: str = "req-1") -> notice.Erasure:
    return notice.Erasure(
        tenant="acme",
        subject_id=uuid.uuid4(),
        request_event_id=request,
        sequence=9,
        requested_at=T0,
        erased_at=T0,
        disclosed_to={"mailer-inc": ("d-1",), "courier-co": ("d-2",)},
    )


def attempts(outbox: Outbox, delivery_id: uuid.UUID) -> list[tuple[Any, ...]]:
    with outbox.pool.connection() as conn:
        rows = listing.attempts(conn, outbox.schema, delivery_id)
    return [(a.attempt, a.status_code, a.duration_ms) for a in rows]


def statuses(outbox: Outbox) -> dict[str, tuple[str, int]]:
    with outbox.pool.connection() as conn:
        rows = listing.deliveries(conn, outbox.schema)
    return {r.recipient: (r.status, r.attempts) for r in rows}


def test_planning_twice_plans_once(outbox: Outbox) -> None:
    first = outbox.plan([erasure(), erasure()], T0)  # a duplicate inside one batch, too
    again = outbox.plan([erasure()], T0 + timedelta(minutes=1))

    assert [len(deliveries) for _, deliveries in first] == [3]
    assert again == []
    assert statuses(outbox) == {
        "courier-co": ("no_endpoint", 0),
        "mailer-inc": ("pending", 0),
        "payroll": ("pending", 0),
    }


def test_a_locked_delivery_is_skipped_so_two_notifiers_split_the_work(outbox: Outbox) -> None:
    outbox.plan([erasure()], T0)
    with psycopg.connect(outbox.pool.conninfo) as other, other.transaction():
        locked = other.execute(
            f"SELECT recipient FROM {outbox.schema}.webhook_deliveries"
            " WHERE status = 'pending' ORDER BY recipient LIMIT 1 FOR UPDATE"
        ).fetchone()
        claim = outbox.claim(T0)
        assert claim is not None and locked is not None
        assert claim.recipient != locked[0]
        assert outbox.claim(T0) is None  # the other one is leased, the locked one skipped


def test_an_attempt_interrupted_by_a_crash_stays_recorded_and_the_lease_expires(
    outbox: Outbox,
) -> None:
    outbox.plan([erasure()], T0)
    first = outbox.claim(T0)
    assert first is not None and first.attempt == 1
    # The process dies here, during the request: no outcome is ever written.
    assert outbox.claim(T0 + LEASE - timedelta(seconds=1)) is not None  # the other delivery
    assert outbox.claim(T0 + LEASE - timedelta(seconds=1)) is None  # first one still leased

    again = outbox.claim(T0 + LEASE)
    assert again is not None and again.delivery_id == first.delivery_id
    assert again.attempt == 2 and again.body == first.body
    assert outbox.finish(first, OK, T0 + LEASE) == "superseded"  # a late answer changes nothing
    assert outbox.finish(again, OK, T0 + LEASE) == "delivered"
    assert attempts(outbox, first.delivery_id) == [(1, 200, 3), (2, 200, 3)]


def next_due(outbox: Outbox) -> datetime | None:
    with outbox.pool.connection() as conn:
        row = conn.execute(
            f"SELECT min(next_attempt_at) FROM {outbox.schema}.webhook_deliveries"
            " WHERE status = 'pending'"
        ).fetchone()
    return None if row is None else row[0]


def test_failures_are_retried_with_backoff_until_the_last_attempt(outbox: Outbox) -> None:
    outbox.plan([erasure()], T0)
    now: datetime | None = T0
    seen = []
    while now is not None:
        while (claim := outbox.claim(now)) is not None:
            seen.append((claim.recipient, now))
            outbox.finish(claim, DOWN, now)
        now = next_due(outbox)

    for recipient in ("mailer-inc", "payroll"):
        times = [at for name, at in seen if name == recipient]
        assert len(times) == POLICY.max_attempts
        waits = [b - a for a, b in pairwise(times)]
        assert timedelta(seconds=5) <= waits[0] <= timedelta(seconds=10)  # 10 s, jittered
        assert timedelta(seconds=10) <= waits[1] <= timedelta(seconds=20)  # 20 s, jittered
    assert statuses(outbox)["mailer-inc"] == ("failed", 3)
    with outbox.pool.connection() as conn:
        (code,) = conn.execute(
            f"SELECT last_status_code FROM {outbox.schema}.webhook_deliveries"
            " WHERE recipient = 'mailer-inc'"
        ).fetchone() or (None,)
    assert code == 503


def test_an_endpoint_removed_before_delivery_ends_as_no_endpoint(
    outbox: Outbox, schema: tuple[str, str]
) -> None:
    outbox.plan([erasure()], T0)
    with psycopg.connect(schema[0], autocommit=True) as conn:
        assert endpoints.remove(conn, schema[1], "acme", "payroll")
        assert endpoints.set_enabled(conn, schema[1], "acme", "mailer-inc", False)
    settled = [outbox.claim(T0), outbox.claim(T0)]
    assert {(c.recipient, c.settled) for c in settled if c} == {
        ("mailer-inc", "no_endpoint"),
        ("payroll", "no_endpoint"),
    }
    assert statuses(outbox)["payroll"] == ("no_endpoint", 0)


def test_a_request_is_finalized_once_every_delivery_is_settled(outbox: Outbox) -> None:
    (planned, _), *_ = outbox.plan([erasure()], T0)
    calls: list[ReadyRequest] = []

    def record(ready: ReadyRequest) -> bool:
        calls.append(ready)
        return True

    retry = T0 + timedelta(minutes=5)
    claim = outbox.claim(T0)
    assert claim is not None
    assert outbox.finalize_next(T0, record, retry_at=retry) is None  # two still pending
    outbox.finish(claim, OK, T0 + timedelta(seconds=1))
    last = outbox.claim(T0)
    assert last is not None
    outbox.finish(last, OK, T0 + timedelta(seconds=2))

    ready = outbox.finalize_next(T0 + timedelta(seconds=3), record, retry_at=retry)
    assert ready is not None and calls == [ready]
    assert ready.subject_id == planned.subject_id
    assert ready.settled_at == T0 + timedelta(seconds=2)
    assert [d["recipient"] for d in ready.deliveries] == ["courier-co", "mailer-inc", "payroll"]
    assert ready.deliveries[0] == {
        "recipient": "courier-co",
        "delivery_id": str(notice.delivery_id("acme", "req-1", "courier-co")),
        "status": "no_endpoint",
        "attempts": 0,
        "last_status_code": None,
    }
    assert outbox.finalize_next(T0 + timedelta(seconds=4), record, retry_at=retry) is None


def test_a_request_the_ledger_refuses_waits_and_is_tried_again(outbox: Outbox) -> None:
    outbox.plan([notice.Erasure("globex", uuid.uuid4(), "req-9", 1, T0, T0, {})], T0)
    answers = iter([False, True])
    retry = T0 + timedelta(minutes=5)

    assert outbox.finalize_next(T0, lambda _: next(answers), retry_at=retry) is not None
    assert (
        outbox.finalize_next(retry - timedelta(seconds=1), lambda _: True, retry_at=retry) is None
    )

    again = outbox.finalize_next(retry, lambda _: next(answers), retry_at=retry)
    assert again is not None and again.deliveries == []
    assert outbox.finalize_next(retry, lambda _: True, retry_at=retry) is None
