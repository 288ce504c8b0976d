"""The tenant's erasure requests, tenant-wide: each one's status in the workflow, its due date,
and the erasure webhooks sent for it.

Rules this module keeps:

* **No personal values.** A request's reason stays out (it is sealed in the ledger and not in
  the view); subject ids are not personal. The refusal code (``legal_hold``) and the tenant's
  own hold references are.
* **Deliveries as the notifier sees them.** While the notifier's outbox (``ledger webhooks``)
  holds a request's deliveries, they are read from there, with their attempts and when each
  settled; otherwise the deliveries the ledger recorded in ``ProcessorsNotified`` are shown,
  without a settling time.
* Newest request first, at most ``limit``; for ``reader``, ``auditor`` and ``admin`` keys.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from projections.api.access import Principal, Scope, require
from projections.api.context import ApiContext, context
from projections.api.problems import PROBLEM_RESPONSES
from projections.queries import Conn

router = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES, tags=["erasure"])
Ctx = Annotated[ApiContext, Depends(context)]
Reader = Annotated[Principal, Depends(require(Scope.READER, Scope.AUDITOR, Scope.ADMIN))]
_DELIVERY = ("recipient", "status", "attempts", "last_status_code")


class ErasureDelivery(BaseModel):
    recipient: str = Field(description="A recipient of the subject's disclosures, or a processor.")
    status: str = Field(description="pending, delivered, failed or no_endpoint.")
    attempts: int | None = None
    last_status_code: int | None = None
    settled_at: datetime | None = Field(
        default=None, description="When it was delivered or given up (from the outbox)."
    )


class ErasureEntry(BaseModel):
    event_id: str
    subject_id: UUID
    source: str
    requested_at: datetime
    recorded_at: datetime
    due_by: datetime
    overdue: bool = Field(description="Neither completed nor refused after its due date.")
    status: Literal["requested", "shredded", "notified", "completed", "refused"]
    status_at: datetime
    refusal_code: str | None = Field(default=None, description="legal_hold: refused.")
    hold_references: list[str] | None = None
    deliveries: list[ErasureDelivery]


class Erasures(BaseModel):
    erasures: list[ErasureEntry]


@router.get("/erasures")
async def erasures(
    ctx: Ctx, who: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> Erasures:
    """The tenant's erasure requests, newest first, with their webhook deliveries."""
    async with ctx.connection() as conn:
        cur = await conn.execute(
            ctx.queries.sql(
                "SELECT event_id, subject_id, source, requested_at, recorded_at, due_by, status, "
                "status_at, refusal_reason, hold_references, deliveries, "
                "status NOT IN ('completed', 'refused') AND due_by < {now} AS overdue "
                "FROM {erasure}.erasure_requests WHERE tenant = %s "
                "ORDER BY requested_at DESC, event_id DESC LIMIT %s"
            ),
            [who.tenant, limit],
        )
        rows = await cur.fetchall()
        outbox = await _outbox(ctx, conn, who.tenant, [r["event_id"] for r in rows])
    return Erasures(erasures=[_entry(r, outbox.get(r["event_id"])) for r in rows])


async def _outbox(
    ctx: ApiContext, conn: Conn, tenant: str, requests: list[str]
) -> dict[str, list[ErasureDelivery]]:
    """The outbox's deliveries of these requests, by request (none if there is no outbox)."""
    table = f'"{ctx.settings.database_schema.replace(chr(34), chr(34) * 2)}".webhook_deliveries'
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL AS found", [table])
    found = await cur.fetchone()
    if not requests or not (found and found["found"]):
        return {}
    cur = await conn.execute(
        ctx.queries.sql(
            "SELECT request_event_id, recipient, status, attempts, last_status_code, settled_at "
            "FROM {ledger}.webhook_deliveries WHERE tenant = %s AND request_event_id = ANY(%s) "
            "ORDER BY recipient"
        ),
        [tenant, requests],
    )
    by_request: dict[str, list[ErasureDelivery]] = {}
    for r in await cur.fetchall():
        by_request.setdefault(r["request_event_id"], []).append(ErasureDelivery(**r))
    return by_request


def _entry(row: dict[str, Any], outbox: list[ErasureDelivery] | None) -> ErasureEntry:
    recorded = [
        ErasureDelivery(**{k: d.get(k) for k in _DELIVERY}) for d in row["deliveries"] or ()
    ]
    return ErasureEntry(
        **{k: v for k, v in row.items() if k not in ("refusal_reason", "deliveries")},
        refusal_code=row["refusal_reason"],
        deliveries=outbox if outbox is not None else recorded,
    )
