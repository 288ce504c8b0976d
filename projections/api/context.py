"""What every route needs, built once per server: settings, the pool, queries and keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import Request
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ledger.process.settings import Settings
from projections.api.decisions import decide
from projections.api.models import PurposeDecision
from projections.api.personal import SubjectKeys
from projections.api.problems import Unavailable
from projections.api.purpose_cache import Connect, PurposeCache
from projections.api.writer import LedgerReads, LedgerWriter
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
    checks: PurposeChecks
    reads: LedgerReads

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[DictRow]]:
        """A pooled connection, or a 503 problem if the database cannot be reached."""
        try:
            async with self.pool.connection(timeout=5.0) as conn:
                yield conn
        except (PoolTimeout, psycopg.OperationalError):
            raise Unavailable("the database is not reachable; try again shortly") from None


class PurposeChecks:
    """Answers purpose checks: from memory kept no older than the consent view
    (:class:`PurposeCache`), or, with ``LEDGER_PURPOSE_CACHE_SUBJECTS=0``, one query each."""

    def __init__(
        self, settings: Settings, queries: Queries, pool: AsyncConnectionPool[Any]
    ) -> None:
        self.queries = queries
        self.connect: Connect = lambda: pool.connection(timeout=5.0)
        capacity = settings.purpose_cache_subjects
        self.cache = (
            PurposeCache(queries, self.connect, capacity=capacity, recover=pool.check)
            if capacity
            else None
        )

    async def decide(
        self, tenant: str, pairs: Sequence[tuple[bytes, str]]
    ) -> list[PurposeDecision]:
        """The decisions for (reference digest, purpose) pairs, in the order given."""
        try:
            if self.cache is not None:
                return await self.cache.check(tenant, pairs)
            async with self.connect() as conn:
                if len(pairs) == 1:  # the one-pair statement plans better than the batch's
                    rows = [await self.queries.purpose_check(conn, tenant, *pairs[0])]
                else:
                    rows = await self.queries.purpose_checks(conn, tenant, pairs)
        except psycopg.OperationalError:
            raise Unavailable("the database is not reachable; try again shortly") from None
        return [decide(purpose, row) for (_, purpose), row in zip(pairs, rows, strict=True)]


async def context(request: Request) -> ApiContext:
    """Async so FastAPI calls it on the event loop, not in its thread pool."""
    ctx: ApiContext = request.app.state.ctx
    return ctx
