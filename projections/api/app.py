"""The query API: one FastAPI app over the views, built from settings.

``prepare`` creates whatever tables the API reads (the ledger's, the views', the API keys')
before the server accepts requests; ``create_app`` wires routes, errors, metrics and the
connection pool. Liveness (``/healthz``) says the process answers; readiness (``/readyz``)
says the database answers, every projection is within ``LEDGER_READY_MAX_LAG`` events of
the ledger, no projection is being rebuilt, no write transaction has been open longer than
``LEDGER_WRITE_TIMEOUT`` (the write path is not stalled), and the server is not stopping
(``app.state.stopping``, set by ``ledger serve`` when a stop signal arrives).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ledger.process.runtime import ensure_ingest_key, kek_ring, open_reader
from ledger.process.settings import Settings
from projections.api import (
    access,
    commands,
    documents,
    erasures,
    ingest,
    metrics,
    problems,
    records,
    register,
    replays,
    reports,
    rights,
    statistics,
    subjects,
)
from projections.api import checkpoints as checkpoint_routes
from projections.api import proofs as proof_routes
from projections.api import verification as verification_routes
from projections.api.collector import LedgerCollector
from projections.api.context import ApiContext, PurposeChecks
from projections.api.models import Readiness, ViewState
from projections.api.personal import SubjectKeys
from projections.api.writer import LedgerReads, LedgerWriter
from projections.catalog import VIEWS, open_view
from projections.queries import Queries
from projections.replay.registry import Replays
from projections.status import oldest_write_query, parse_status, status_query
from projections.web import app as web


def prepare(settings: Settings) -> None:
    """Creates the tables the API reads, so a fresh database serves empty answers, and the
    first ingest key pair if there is none."""
    open_reader(settings).close()
    ensure_ingest_key(settings)
    for name in VIEWS:
        open_view(settings, name).datastore.close()
    with psycopg.connect(settings.require_database(), autocommit=True) as conn:
        access.create_table(conn, settings.database_schema)
    Replays.connect(settings).close()
    web.prepare(settings)


def create_app(settings: Settings, *, pool_size: int = 8) -> FastAPI:
    _, lookup_key = settings.require_keys()
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
            builder.close()
            await pool.close()
            writer.close()
            reads.close()

    app = FastAPI(
        title="Compliance ledger query API",
        version="1",
        description="Consent state, purpose checks, the one-year disclosure log, records of "
        "collection, and key and erasure status, read from the ledger's projections.",
        lifespan=lifespan,
    )
    writer = LedgerWriter(settings)
    reads = LedgerReads(settings)
    queries = Queries(settings)
    app.state.ctx = ApiContext(
        settings=settings,
        queries=queries,
        keys=SubjectKeys(kek_ring(settings), lookup_key),
        pool=pool,
        writer=writer,
        checks=PurposeChecks(settings, queries, pool),
        reads=reads,
    )
    app.state.api_keys = access.ApiKeys(pool, settings.database_schema)
    builder = replays.Builder(settings)
    app.state.replay_builder = builder
    app.state.stopping = False
    problems.install(app)
    registry = CollectorRegistry()
    registry.register(LedgerCollector(settings))
    metrics.install(app, registry)
    if app.state.ctx.checks.cache is not None:
        app.state.ctx.checks.cache.on_count = metrics.purpose_memory(
            metrics.shared_registry(registry)
        )
    app.include_router(subjects.router)
    app.include_router(commands.router)
    app.include_router(rights.router)
    app.include_router(register.router)
    app.include_router(records.router)
    app.include_router(ingest.router)
    app.include_router(checkpoint_routes.router)
    app.include_router(proof_routes.router)
    app.include_router(verification_routes.router)
    app.include_router(documents.router)
    app.include_router(reports.router)
    app.include_router(replays.router)
    app.include_router(statistics.router)
    app.include_router(erasures.router)
    web.install(app, settings, pool, kek_ring(settings))
    _health_routes(app, settings)
    return app


def _health_routes(app: FastAPI, settings: Settings) -> None:
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up and answering."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        response_model=Readiness,
        responses={
            503: {
                "model": Readiness,
                "description": "Not ready: the same document says why (or, without a "
                "database, a problem document).",
                "content": {**problems.PROBLEM_RESPONSES[503]["content"]},
            }
        },
    )
    async def readyz() -> JSONResponse:
        """Ready when the database answers, every projection is within the lag limit, none
        is being rebuilt, no write has been open past ``LEDGER_WRITE_TIMEOUT`` and the server
        is not stopping.

        A rebuild leaves the live view answering, so this is a choice: while an operator
        rebuilds a view, its answers may change at the swap and the rebuild loads the database,
        so the API says it is not ready. Every instance reads the same database, so a rebuild
        makes *all* instances unready: a load balancer that drops unready targets serves
        nothing meanwhile, one that fails open keeps serving. Rebuild at a quiet time."""
        ctx: ApiContext = app.state.ctx
        async with ctx.connection() as conn:
            cur = await conn.execute(status_query(settings))
            row = await cur.fetchone()
            cur = await conn.execute(oldest_write_query(settings))
            oldest = await cur.fetchone()
        assert row is not None and oldest is not None
        views = parse_status(row)
        stopping = bool(app.state.stopping)
        write_age = float(oldest["age"])
        stalled = write_age > settings.write_timeout.total_seconds()
        ready = (
            not stopping
            and not stalled
            and all(v.lag <= settings.ready_max_lag and not v.rebuilding for v in views)
        )
        body = Readiness(
            ready=ready,
            stopping=stopping,
            oldest_write_s=round(write_age, 3),
            write_stalled=stalled,
            head=views[0].head if views else 0,
            max_lag=settings.ready_max_lag,
            projections=[
                ViewState(name=v.name, position=v.position, lag=v.lag, rebuilding=v.rebuilding)
                for v in views
            ],
        )
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
