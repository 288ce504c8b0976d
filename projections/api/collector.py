"""Figures for ``/metrics`` read from the database at scrape time (see :class:`LedgerCollector`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.sql
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from psycopg.rows import DictRow, dict_row

from ledger.process.settings import Settings
from projections.catalog import live_schema
from projections.register import DUE_SOON
from projections.status import oldest_write_query, parse_status, status_query


class LedgerCollector:
    """Figures read from the database at scrape time, so every process's work is counted:
    events recorded (their rate is the ingest rate), ingest outcomes by reason, each
    projection's position and lag, unsettled and overdue erasure requests per tenant, how far
    each relay is behind, how many events no signed checkpoint covers yet and when the last
    was signed, erasure webhooks waiting or given up per tenant, and how long the oldest open
    write transaction has been open."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: psycopg.Connection[Any] | None = None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ledger_database_up", "1 if the last scrape reached the database.")
        try:
            status, counts, erasures = self._read()
            operations = list(self._operations(status[0].head if status else 0))
            writes = list(self._writes())
            register = list(self._register())
        except psycopg.Error:
            self._conn = None
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        events = CounterMetricFamily("ledger_events_recorded", "Events recorded in the ledger.")
        events.add_metric([], status[0].head if status else 0)
        yield events
        outcomes = CounterMetricFamily(
            "ledger_ingest_messages",
            "Ingest messages by outcome and rejection reason.",
            labels=["outcome", "reason"],
        )
        for (outcome, reason), n in sorted(counts.items()):
            outcomes.add_metric([outcome, reason], n)
        yield outcomes
        lag = GaugeMetricFamily(
            "ledger_projection_lag_events", "Events not yet applied.", labels=["projection"]
        )
        position = GaugeMetricFamily(
            "ledger_projection_position", "Last applied event.", labels=["projection"]
        )
        for view in status:
            lag.add_metric([view.name], view.lag)
            position.add_metric([view.name], view.position)
        yield lag
        yield position
        yield from _erasure_metrics(erasures)
        yield from operations
        yield from writes
        yield from register

    def _register(self) -> Iterator[Metric]:
        """The register of requests (``projections.register``): open, overdue and due-soon
        requests by tenant and kind, erasure requests included."""
        assert self._conn is not None
        rows = self._conn.execute(
            psycopg.sql.SQL(
                "SELECT tenant, kind, count(*) AS open, "
                "count(*) FILTER (WHERE due_at < now()) AS overdue, "
                "count(*) FILTER (WHERE due_at >= now() AND due_at < now() + %s) AS due_soon "
                "FROM {}.requests WHERE status = 'open' GROUP BY tenant, kind "
                "ORDER BY tenant, kind"
            ).format(psycopg.sql.Identifier(live_schema(self._settings, "erasure"))),
            [DUE_SOON],
        ).fetchall()
        families = {
            "open": GaugeMetricFamily(
                "ledger_requests_open",
                "Requests in the register not yet settled.",
                labels=["tenant", "kind"],
            ),
            "overdue": GaugeMetricFamily(
                "ledger_requests_overdue",
                "Open requests past their due date (GDPR art. 12(3)).",
                labels=["tenant", "kind"],
            ),
            "due_soon": GaugeMetricFamily(
                "ledger_requests_due_soon",
                "Open requests due within 7 days.",
                labels=["tenant", "kind"],
            ),
        }
        for row in rows:
            for name, family in families.items():
                family.add_metric([row["tenant"], row["kind"]], row[name])
        yield from families.values()

    def _writes(self) -> Iterator[Metric]:
        assert self._conn is not None
        row = self._conn.execute(oldest_write_query(self._settings)).fetchone()
        assert row is not None
        age = GaugeMetricFamily(
            "ledger_write_transaction_age_seconds",
            "How long the oldest open write transaction on the ledger has been open (0: none).",
        )
        age.add_metric([], float(row["age"]))
        yield age

    def _operations(self, head: int) -> Iterator[Metric]:
        """Relay lag, checkpoint coverage and webhook backlog; tables a process has not
        created yet (no relay with a key, no notifier) give no figure rather than an error."""
        assert self._conn is not None
        schema = psycopg.sql.Identifier(self._settings.database_schema)
        relay = GaugeMetricFamily(
            "ledger_relay_lag_events", "Recorded events not yet published.", labels=["topic"]
        )
        rows = self._conn.execute(
            psycopg.sql.SQL(
                "SELECT substr(name, 7) AS topic, position FROM {}.positions "
                "WHERE name LIKE 'relay:%' ORDER BY name"
            ).format(schema)
        ).fetchall()
        for row in rows:
            relay.add_metric([row["topic"]], max(0, head - int(row["position"])))
        yield relay
        found = self._conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL AS checkpoints, "
            "to_regclass(%s) IS NOT NULL AS deliveries",
            [
                f'"{self._settings.database_schema}".checkpoints',
                f'"{self._settings.database_schema}".webhook_deliveries',
            ],
        ).fetchone()
        assert found is not None
        if found["checkpoints"]:
            yield from self._checkpoints(schema, head)
        if found["deliveries"]:
            yield from self._deliveries(schema)

    def _checkpoints(self, schema: psycopg.sql.Identifier, head: int) -> Iterator[Metric]:
        assert self._conn is not None
        row = self._conn.execute(
            psycopg.sql.SQL(
                "SELECT max(sequence) AS sequence, max(time_us) AS time_us FROM {}.checkpoints"
            ).format(schema)
        ).fetchone()
        assert row is not None
        unsigned = GaugeMetricFamily(
            "ledger_checkpoint_unsigned_events",
            "Events after the last signed checkpoint (what no checkpoint covers yet).",
        )
        unsigned.add_metric([], max(0, head - int(row["sequence"] or 0)))
        yield unsigned
        if row["time_us"] is not None:
            last = GaugeMetricFamily(
                "ledger_checkpoint_last_timestamp_seconds", "When the last checkpoint was signed."
            )
            last.add_metric([], int(row["time_us"]) / 1_000_000)
            yield last

    def _deliveries(self, schema: psycopg.sql.Identifier) -> Iterator[Metric]:
        assert self._conn is not None
        rows = self._conn.execute(
            psycopg.sql.SQL(
                "SELECT tenant, status, count(*) AS n FROM {}.webhook_deliveries "
                "WHERE status IN ('pending', 'failed') GROUP BY 1, 2 ORDER BY 1, 2"
            ).format(schema)
        ).fetchall()
        deliveries = GaugeMetricFamily(
            "ledger_webhook_deliveries",
            "Erasure webhooks still being retried (pending) or given up (failed).",
            labels=["tenant", "status"],
        )
        for row in rows:
            deliveries.add_metric([row["tenant"], row["status"]], row["n"])
        yield deliveries

    def _read(self) -> tuple[list[Any], dict[tuple[str, str], int], list[DictRow]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._settings.require_database(),
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=3,
            )
        row = self._conn.execute(status_query(self._settings)).fetchone()
        assert row is not None
        schema = psycopg.sql.Identifier(self._settings.database_schema)
        counted = self._conn.execute(
            psycopg.sql.SQL("SELECT outcome, reason, count FROM {}.ingest_counts").format(schema)
        ).fetchall()
        erasures = self._conn.execute(
            psycopg.sql.SQL(
                "SELECT tenant, count(*) AS unsettled, "
                "count(*) FILTER (WHERE due_by < now()) AS overdue "
                "FROM {}.erasure_requests WHERE status NOT IN ('completed', 'refused') "
                "GROUP BY tenant ORDER BY tenant"
            ).format(psycopg.sql.Identifier(live_schema(self._settings, "erasure")))
        ).fetchall()
        counts = {(r["outcome"], r["reason"]): int(r["count"]) for r in counted}
        return parse_status(row), counts, erasures


def _erasure_metrics(rows: list[DictRow]) -> Iterator[Metric]:
    unsettled = GaugeMetricFamily(
        "ledger_erasure_requests_unsettled",
        "Erasure requests neither completed nor refused.",
        labels=["tenant"],
    )
    overdue = GaugeMetricFamily(
        "ledger_erasure_requests_overdue",
        "Unsettled erasure requests past their due date (one month, GDPR art. 12(3)).",
        labels=["tenant"],
    )
    for row in rows:
        unsettled.add_metric([row["tenant"]], row["unsettled"])
        overdue.add_metric([row["tenant"]], row["overdue"])
    yield unsettled
    yield overdue
