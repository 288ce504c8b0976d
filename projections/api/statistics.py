"""Tenant-wide figures for the console's dashboard: consent over time per purpose, disclosures
by recipient and category, and how far each projection is behind the ledger.

Rules this module keeps:

* **Counts, never personal values.** Consents are counted per purpose and day, disclosures
  per recipient and per data category; no subject, reference or note appears in an answer.
* **Days are UTC dates**, the last ``days`` of them up to today (or a replay's instant)
  inclusive; disclosures past their retention horizon are not counted, as the log hides them.
* **Tenant-scoped**: every figure is read for the caller's tenant only (the projections'
  positions are the ledger's, shared by every tenant, and say nothing about any of them).
* For ``reader``, ``auditor`` and ``admin`` keys.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from projections.api.access import Principal, Scope, require
from projections.api.context import ApiContext, context
from projections.api.models import ViewState
from projections.api.problems import PROBLEM_RESPONSES
from projections.status import parse_status, status_query

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["statistics"])
Ctx = Annotated[ApiContext, Depends(context)]
Reader = Annotated[Principal, Depends(require(Scope.READER, Scope.AUDITOR, Scope.ADMIN))]
Days = Annotated[int, Query(ge=1, le=730, description="How many days, up to today (UTC).")]


class ConsentDay(BaseModel):
    day: date
    granted: int = Field(
        description="Consents given that day to a subject whose consent did not stand granted."
    )
    withdrawn: int = Field(description="Withdrawals that day of a consent that stood granted.")
    standing: int = Field(description="Subjects whose consent stood granted at the day's end.")


class PurposeConsents(BaseModel):
    purpose: str
    days: list[ConsentDay]


class ConsentStatistics(BaseModel):
    since: date
    until: date
    purposes: list[PurposeConsents]


class Count(BaseModel):
    name: str
    count: int


class DisclosureStatistics(BaseModel):
    since: datetime
    until: datetime
    total: int
    by_recipient: list[Count] = Field(description="Most disclosures first.")
    by_category: list[Count] = Field(
        description="Per data category; a disclosure of several categories counts in each."
    )


class ProjectionStates(BaseModel):
    head: int = Field(description="The ledger's last event position.")
    max_lag: int = Field(description="LEDGER_READY_MAX_LAG: the lag readiness allows.")
    projections: list[ViewState]


def window(now: datetime, days: int) -> tuple[date, date]:
    """The first and last UTC day of the last ``days`` days up to ``now``."""
    until = now.astimezone(UTC).date()
    return until - timedelta(days=days - 1), until


@router.get("/statistics/consents")
async def consents(ctx: Ctx, who: Reader, days: Days = 90) -> ConsentStatistics:
    """Per purpose of the tenant and day: consents given and withdrawn (changes of state),
    and how many subjects' consent stood granted at the day's end."""
    since, until = window(ctx.queries.now(), days)
    async with ctx.connection() as conn:
        purposes = [p["purpose"] for p in await ctx.queries.purposes(conn, who.tenant)]
        cur = await conn.execute(
            ctx.queries.sql(
                "SELECT purpose, NULL::date AS day, sum(granted - withdrawn)::int AS granted, "
                "0 AS withdrawn FROM {consent}.consent_days "
                "WHERE tenant = %(tenant)s AND day < %(since)s GROUP BY purpose "
                "UNION ALL SELECT purpose, day, granted, withdrawn FROM {consent}.consent_days "
                "WHERE tenant = %(tenant)s AND day >= %(since)s AND day <= %(until)s"
            ),
            {"tenant": who.tenant, "since": since, "until": until},
        )
        rows = await cur.fetchall()
    before: dict[str, int] = defaultdict(int)
    changes: dict[tuple[str, date], tuple[int, int]] = {}
    for r in rows:
        if r["day"] is None:
            before[r["purpose"]] = r["granted"]
        else:
            changes[(r["purpose"], r["day"])] = (r["granted"], r["withdrawn"])
    return ConsentStatistics(
        since=since,
        until=until,
        purposes=[
            PurposeConsents(purpose=p, days=_series(p, since, days, before[p], changes))
            for p in purposes
        ],
    )


def _series(
    purpose: str,
    since: date,
    days: int,
    standing: int,
    changes: dict[tuple[str, date], tuple[int, int]],
) -> list[ConsentDay]:
    series = []
    for n in range(days):
        day = since + timedelta(days=n)
        granted, withdrawn = changes.get((purpose, day), (0, 0))
        standing += granted - withdrawn
        series.append(ConsentDay(day=day, granted=granted, withdrawn=withdrawn, standing=standing))
    return series


@router.get("/statistics/disclosures")
async def disclosures(ctx: Ctx, who: Reader, days: Days = 90) -> DisclosureStatistics:
    """How many disclosures the tenant recorded in the last ``days`` days, per recipient and
    per data category."""
    now = ctx.queries.now()
    since = datetime.combine(window(now, days)[0], time(), UTC)
    async with ctx.connection() as conn:
        cur = await conn.execute(
            ctx.queries.sql(
                "WITH d AS (SELECT recipient, categories FROM {records}.disclosures "
                "WHERE tenant = %(tenant)s AND disclosed_at >= %(since)s "
                "AND disclosed_at <= %(until)s AND last_used_at >= {now} - %(horizon)s) "
                "SELECT 'total' AS axis, '' AS name, count(*)::int AS n FROM d "
                "UNION ALL SELECT 'recipient', recipient, count(*)::int FROM d GROUP BY recipient "
                "UNION ALL SELECT 'category', c, count(*)::int FROM d, unnest(d.categories) c "
                "GROUP BY c ORDER BY n DESC, name"
            ),
            {
                "tenant": who.tenant,
                "since": since,
                "until": now,
                "horizon": ctx.settings.retention_disclosures,
            },
        )
        rows = await cur.fetchall()
    axes: dict[str, list[Count]] = defaultdict(list)
    for r in rows:
        axes[r["axis"]].append(Count(name=r["name"], count=r["n"]))
    return DisclosureStatistics(
        since=since,
        until=now,
        total=axes["total"][0].count if axes["total"] else 0,
        by_recipient=axes["recipient"],
        by_category=axes["category"],
    )


@router.get("/projections")
async def projections(ctx: Ctx, who: Reader) -> ProjectionStates:
    """Each projection's position, its lag behind the ledger, and whether it is being
    rebuilt: what ``/readyz`` reports of them."""
    async with ctx.connection() as conn:
        cur = await conn.execute(status_query(ctx.settings))
        row = await cur.fetchone()
    assert row is not None
    views = parse_status(row)
    return ProjectionStates(
        head=int(row["head"]),
        max_lag=ctx.settings.ready_max_lag,
        projections=[
            ViewState(name=v.name, position=v.position, lag=v.lag, rebuilding=v.rebuilding)
            for v in views
        ],
    )
