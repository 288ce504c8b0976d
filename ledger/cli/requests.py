"""``ledger requests``: the register of data subject requests (GDPR art. 12(3)).

``open``, ``verify``, ``extend`` and ``complete`` record the facts a producer would send over
Kafka, as ``cli``; a reference is personal data: pass ``-`` to read it from standard input.
``list`` prints the tenant's register from the erasure view, one JSON object a line, by due
date, with the overdue and due-soon flags and nothing personal. An erasure request is opened
by ``ledger erase`` and settled by the erasure workflow; it is listed all the same.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Literal

import psycopg
import typer
from psycopg.rows import dict_row

from ledger.cli.common import fail, settings
from ledger.cli.erasure import RefArg, TenantArg, record_command
from ledger.domain.requests import REQUEST_KINDS
from ledger.process.settings import Settings
from projections.queries import Queries

requests = typer.Typer(help="The register of data subject requests (GDPR art. 12(3)).")

RequestArg = Annotated[str, typer.Argument(help="The request's id (its RequestOpened's event id).")]
State = Literal["open", "overdue", "due_soon", "settled", "all"]


@requests.command("open")
def open_request(
    tenant: TenantArg,
    ref: RefArg,
    kind: Annotated[str, typer.Argument(help=", ".join(sorted(REQUEST_KINDS)) + ".")],
    channel: Annotated[str, typer.Option(help="How it arrived: email, letter, phone...")],
    verified: Annotated[bool, typer.Option(help="The requester's identity is verified.")] = False,
    received_at: Annotated[
        datetime | None, typer.Option(help="When it arrived (ISO 8601 with a zone); default now.")
    ] = None,
    event_id: Annotated[str | None, typer.Option(help="The request's id; default random.")] = None,
) -> None:
    """Open a request: due one month after it arrived."""
    if received_at is not None and received_at.tzinfo is None:
        fail("--received-at needs a time zone, e.g. 2026-11-30T09:00:00+00:00")
    events = record_command(
        "RequestOpened",
        tenant,
        ref,
        event_id,
        occurred_at=received_at,
        kind=kind,
        channel=channel,
        identity_verified=verified,
        details=None,
    )
    typer.echo(f"subject {events[-1].originator_id}: request {events[-1].event_id} opened")


@requests.command("verify")
def verify(
    tenant: TenantArg,
    ref: RefArg,
    request_id: RequestArg,
    method: Annotated[str, typer.Option(help="How: id-document, callback...")],
) -> None:
    """Record that the requester's identity is verified."""
    record_command(
        "RequestIdentityVerified", tenant, ref, None, request_id=request_id, method=method
    )
    typer.echo(f"request {request_id}: identity verified")


@requests.command("extend")
def extend(
    tenant: TenantArg,
    ref: RefArg,
    request_id: RequestArg,
    months: Annotated[int, typer.Option(help="1 or 2; two at most in all.")],
    reason: Annotated[str, typer.Option(help="Why, as the subject is told (not personal).")],
) -> None:
    """Extend a request's deadline (GDPR art. 12(3))."""
    record_command(
        "RequestExtended",
        tenant,
        ref,
        None,
        request_id=request_id,
        months=months,
        extension_reason=reason,
    )
    typer.echo(f"request {request_id}: extended by {months} month(s)")


@requests.command("complete")
def complete(
    tenant: TenantArg,
    ref: RefArg,
    request_id: RequestArg,
    fulfilled_by: Annotated[
        str | None, typer.Option(help="The subject's event that answered it.")
    ] = None,
    refused: Annotated[
        str | None, typer.Option(help="Refuse it, with this reason (personal: stored sealed).")
    ] = None,
) -> None:
    """Settle a request: fulfilled by an event, or refused with a reason."""
    if (fulfilled_by is None) == (refused is None):
        fail("give either --fulfilled-by EVENT_ID or --refused REASON")
    record_command(
        "RequestCompleted",
        tenant,
        ref,
        None,
        request_id=request_id,
        outcome="FULFILLED" if fulfilled_by else "REFUSED",
        resolved_by_event_id=fulfilled_by or "",
        reason=refused,
    )
    typer.echo(f"request {request_id}: {'fulfilled' if fulfilled_by else 'refused'}")


@requests.command("list")
def list_requests(
    tenant: TenantArg,
    state: Annotated[State, typer.Option(help="open, overdue, due_soon, settled or all.")] = "open",
) -> None:
    """The tenant's register by due date, one JSON object a line."""
    for row in asyncio.run(_register(settings(), tenant, state)):
        typer.echo(json.dumps(row, default=str))


async def _register(s: Settings, tenant: str, state: State) -> list[dict[str, object]]:
    conn = await psycopg.AsyncConnection.connect(
        s.require_database(), autocommit=True, row_factory=dict_row
    )
    async with conn:
        rows = await Queries(s).requests(conn, tenant, state=state)
    personal = ("details", "reason")
    return [{k: v for k, v in row.items() if k not in personal} for row in rows]


def register(app: typer.Typer) -> None:
    app.add_typer(requests, name="requests")
