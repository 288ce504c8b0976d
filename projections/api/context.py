"""What every route needs, built once per server: settings, the pool, queries and keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import psycopg
from fastapi import Request
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ledger.settings import Settings
from projections.api.personal import SubjectKeys
from projections.api.problems import Unavailable
from projections.api.writer import LedgerWriter
from projections.queries import Queries


@dataclass(frozen=True)
class Reading:
    """What a read answer depends on: the settings, the queries (over the live views or a
    replay's) and the keys that open personal fields."""

    settings: Settings
    queries: Queries
    keys: SubjectKeys


@dataclass(frozen=True)
class ApiContext(Reading):
    pool: AsyncConnectionPool[AsyncConnection[DictRow]]
    writer: LedgerWriter

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[DictRow]]:
        """A pooled connection, or a 503 problem if the database cannot be reached."""
        try:
            async with self.pool.connection(timeout=5.0) as conn:
                yield conn
        except (PoolTimeout, psycopg.OperationalError):
            raise Unavailable("the database is not reachable; try again shortly") from None


async def context(request: Request) -> ApiContext:
    """Async so FastAPI calls it on the event loop, not in its thread pool."""
    ctx: ApiContext = request.app.state.ctx
    return ctx
