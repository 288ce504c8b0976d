"""Tenant-wide routes for auditors: the disclosure log (paged, or exported whole) and the
purpose catalogue.

The disclosure log defaults to the last 12 months. Pages are keyset-paginated on
(disclosed_at, event_id), so a page never repeats or skips a row however the log grows.
Exports stream every row of the window as CSV or JSON lines from a server-side cursor,
so memory stays flat for any size; CSV cells are guarded against spreadsheet formulas.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from psycopg.rows import DictRow

from projections.api.access import Principal, Scope, require
from projections.api.context import ApiContext, context
from projections.api.models import NO_CONTROL, Disclosure, DisclosurePage, Purpose
from projections.api.personal import Opener
from projections.api.problems import PROBLEM_RESPONSES, BadRequest
from projections.queries import DisclosureFilter

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)
Ctx = Annotated[ApiContext, Depends(context)]
Auditor = Annotated[Principal, Depends(require(Scope.AUDITOR, Scope.ADMIN))]
Reader = Annotated[Principal, Depends(require(Scope.READER, Scope.AUDITOR, Scope.ADMIN))]
DEFAULT_WINDOW = timedelta(days=365)
CSV_COLUMNS = [f for f in Disclosure.model_fields if f != "rectifications"]  # tenant-wide: none
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def disclosure_window(
    since: datetime | None, until: datetime | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """[since, until): by default the twelve months up to ``now`` (the present, or a
    replay's instant)."""
    end = _aware(until) if until else (now or datetime.now(UTC))
    start = _aware(since) if since else end - DEFAULT_WINDOW
    if start >= end:
        raise BadRequest("`since` must be earlier than `until`")
    return start, end


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def disclosure(
    row: DictRow, opener: Opener, horizon: timedelta, rectifications: Any = ()
) -> Disclosure:
    """A disclosure from its row; ``rectifications``: the corrections of its note, if the
    caller read them (a subject's answers do; the tenant-wide log does not)."""
    return opener.model(
        Disclosure,
        row,
        "note",
        retained_until=row["last_used_at"] + horizon,
        personal_data=opener.state,
        rectifications=list(rectifications),
    )


class _Openers:
    """One opener per subject within a request (a key is unwrapped once per subject)."""

    def __init__(self, ctx: ApiContext, who: Principal) -> None:
        self._ctx, self._who = ctx, who
        self._openers: dict[UUID, Opener] = {}

    def __call__(self, row: DictRow) -> Opener:
        subject_id = row["subject_id"]
        if subject_id not in self._openers:
            allowed = self._who.may_see_personal
            self._openers[subject_id] = self._ctx.keys.opener(
                subject_id, row["wrapped"], allowed, row["kek_id"]
            )
        return self._openers[subject_id]


def _encode_cursor(item: Disclosure) -> str:
    raw = json.dumps([item.disclosed_at.isoformat(), item.event_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, event_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), str(event_id)
    except (binascii.Error, ValueError, TypeError):
        raise BadRequest("`cursor` is not a cursor this API returned") from None


_EXPORTS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A page (`json`), or the whole window streamed (`csv`, `jsonl`).",
        "content": {"text/csv": {}, "application/jsonl": {}},
    }
}


@router.get("/disclosures", tags=["auditors"], response_model=DisclosurePage, responses=_EXPORTS)
async def disclosure_log(
    ctx: Ctx,
    who: Auditor,
    recipient: Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL)] = None,
    since: Annotated[datetime | None, Query(description="Default: 12 months ago.")] = None,
    until: Annotated[datetime | None, Query(description="Default: now.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    format: Annotated[
        Literal["json", "csv", "jsonl"],
        Query(description="`json`: one page; `csv` or `jsonl`: the whole window, streamed."),
    ] = "json",
) -> DisclosurePage | StreamingResponse:
    """Every disclosure of the tenant in the window, for an auditor."""
    start, end = disclosure_window(since, until)
    f = DisclosureFilter(start, end, recipient)
    if format != "json":
        return _export(ctx, who, f, format)
    after = _decode_cursor(cursor) if cursor else None
    openers = _Openers(ctx, who)
    horizon = ctx.settings.retention_disclosures
    async with ctx.connection() as conn:
        rows = await ctx.queries.disclosures(conn, who.tenant, f, after=after, limit=limit + 1)
    items = [disclosure(r, openers(r), horizon) for r in rows[:limit]]
    more = len(rows) > limit
    return DisclosurePage(
        since=start, until=end, items=items, next_cursor=_encode_cursor(items[-1]) if more else None
    )


def _export(
    ctx: ApiContext, who: Principal, f: DisclosureFilter, fmt: Literal["csv", "jsonl"]
) -> StreamingResponse:
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/jsonl"
    name = f"disclosures-{who.tenant}-{f.since.date()}-{f.until.date()}.{fmt}"
    return StreamingResponse(
        _rows(ctx, who, f, fmt),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def _rows(
    ctx: ApiContext, who: Principal, f: DisclosureFilter, fmt: str
) -> AsyncIterator[str]:
    openers = _Openers(ctx, who)
    horizon = ctx.settings.retention_disclosures
    if fmt == "csv":
        yield _csv_line(CSV_COLUMNS)
    query, params = ctx.queries.disclosures_sql(who.tenant, f, None, 0)
    async with (
        ctx.connection() as conn,
        conn.transaction(),
        conn.cursor(name="disclosure_export") as cur,
    ):
        await cur.execute(query, params)
        async for row in cur:
            item = disclosure(row, openers(row), horizon)
            if fmt == "csv":
                yield _csv_line(_csv_cells(item))
            else:
                yield item.model_dump_json() + "\n"


def _csv_cells(item: Disclosure) -> list[str]:
    data = item.model_dump(mode="json")
    cells = []
    for column in CSV_COLUMNS:
        value = data[column]
        text = ";".join(value) if isinstance(value, list) else "" if value is None else str(value)
        cells.append("'" + text if text.startswith(_FORMULA_START) else text)
    return cells


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(cells)
    return out.getvalue()


@router.get("/purposes", tags=["auditors"])
async def purposes(ctx: Ctx, who: Reader) -> list[Purpose]:
    """The tenant's purpose catalogue, with every consent text version."""
    async with ctx.connection() as conn:
        rows = await ctx.queries.purposes(conn, who.tenant)
    return [Purpose(**r) for r in rows]
