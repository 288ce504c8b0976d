"""The query API: one FastAPI app over the views, built from settings.

``prepare`` creates whatever tables the API reads (the ledger's, the views', the API keys')
before the server accepts requests; ``create_app`` wires routes, errors, metrics and the
connection pool. Liveness (``/healthz``) says the process answers; readiness (``/readyz``)
says the database answers and every projection is within ``LEDGER_READY_MAX_LAG`` events of
the ledger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ledger.crypto import LocalKek
from ledger.runtime import open_reader
from ledger.settings import Settings
from projections.api import access, metrics, problems, records, subjects
from projections.api.context import ApiContext
from projections.api.models import Readiness, ViewState
from projections.api.personal import SubjectKeys
from projections.catalog import VIEWS, open_view
from projections.queries import Queries
from projections.status import parse_status, status_query


def prepare(settings: Settings) -> None:
    """Creates the tables the API reads, so a fresh database serves empty answers."""
    open_reader(settings).close()
    for name in VIEWS:
        open_view(settings, name).datastore.close()
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        access.create_table(conn, settings.database_schema)


def create_app(settings: Settings, *, pool_size: int = 8) -> FastAPI:
    kek, lookup_key = settings.require_keys()
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.require_database(),
        min_size=2,
        max_size=pool_size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=False)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="Compliance ledger query API",
        version="1",
        description="Consent state, purpose checks, the one-year disclosure log, records of "
        "collection, and key and erasure status, read from the ledger's projections.",
        lifespan=lifespan,
    )
    app.state.ctx = ApiContext(
        settings, pool, Queries(settings), SubjectKeys(LocalKek(kek, settings.kek_id), lookup_key)
    )
    app.state.api_keys = access.ApiKeys(pool, settings.database_schema)
    problems.install(app)
    registry = CollectorRegistry()
    registry.register(LedgerCollector(settings))
    metrics.install(app, registry)
    app.include_router(subjects.router)
    app.include_router(records.router)
    _health_routes(app, settings)
    return app


def _health_routes(app: FastAPI, settings: Settings) -> None:
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up and answering."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], response_model=Readiness)
    async def readyz() -> JSONResponse:
        """Ready when the database answers and every projection is close to the ledger."""
        ctx: ApiContext = app.state.ctx
        async with ctx.connection() as conn:
            cur = await conn.execute(status_query(settings))
            row = await cur.fetchone()
        assert row is not None
        views = parse_status(row)
        ready = all(v.lag <= settings.ready_max_lag for v in views)
        body = Readiness(
            ready=ready,
            head=views[0].head if views else 0,
            max_lag=settings.ready_max_lag,
            projections=[
                ViewState(name=v.name, position=v.position, lag=v.lag, rebuilding=v.rebuilding)
                for v in views
            ],
        )
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


class LedgerCollector:
    """Figures read from the database at scrape time, so every process's work is counted:
    events recorded (their rate is the ingest rate), ingest outcomes by reason, and each
    projection's position and lag."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: psycopg.Connection[Any] | None = None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ledger_database_up", "1 if the last scrape reached the database.")
        try:
            status, counts = self._read()
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

    def _read(self) -> tuple[list[Any], dict[tuple[str, str], int]]:
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
        return parse_status(row), {(r["outcome"], r["reason"]): int(r["count"]) for r in counted}
