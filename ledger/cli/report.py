"""``ledger report`` and ``ledger tenants subject-reports``: subject access reports for staff.

A reference is personal data: pass ``-`` to read it from standard input instead of the
command line (which shells keep in history and ``ps`` shows to other users). An erased
subject's reference leads nowhere; ask for its report with ``--subject-id``. Every report is
recorded in the ledger (``AccessReportGenerated``, producer ``cli``) before it is written out.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar
from uuid import UUID

import psycopg
import typer
from psycopg.rows import dict_row

from ledger.application.service import Ledger
from ledger.cli import admin, common
from ledger.cli.common import fail
from ledger.domain.rules import RuleViolation
from ledger.process.runtime import kek_ring
from ledger.process.settings import Settings
from projections.api.personal import SubjectKeys
from projections.queries import Queries
from projections.reports.model import Requester
from projections.reports.service import (
    Delivered,
    ReportFormat,
    SubjectNotFound,
    generate,
    new_request,
)

_T = TypeVar("_T")
TenantArg = Annotated[str, typer.Argument(help="Tenant code.")]


def report(
    tenant: TenantArg,
    ref: Annotated[
        str | None, typer.Argument(help="The subject's upstream reference, or - for stdin.")
    ] = None,
    subject_id: Annotated[
        UUID | None, typer.Option(help="Ask by subject id instead (erased subjects).")
    ] = None,
    format: Annotated[ReportFormat, typer.Option(help="json or pdf.")] = ReportFormat.JSON,
    out: Annotated[Path | None, typer.Option(help="Write here (default: standard output).")] = None,
) -> None:
    """Generate a subject's access report (personal data shown); recorded in the ledger."""
    if format is ReportFormat.PDF and out is None and sys.stdout.isatty():
        fail("a PDF is not for a terminal: give --out FILE or redirect standard output")
    settings = common.settings()
    ledger = common.ledger(settings)
    try:
        delivered = asyncio.run(_generate(settings, ledger, tenant, ref, subject_id, format))
    except (SubjectNotFound, RuleViolation):
        fail(f"tenant {tenant} has no such subject", code=1)
    finally:
        ledger.close()
    if out is None:
        sys.stdout.buffer.write(delivered.content)
        sys.stdout.flush()
    else:
        out.write_bytes(delivered.content)
    typer.echo(
        f"report {delivered.report_id} for subject {delivered.report.subject_id}: "
        f"{len(delivered.content)} bytes, sha256 {delivered.sha256}, recorded in the ledger",
        err=True,
    )


async def _generate(
    settings: Settings,
    ledger: Ledger,
    tenant: str,
    ref: str | None,
    subject_id: UUID | None,
    fmt: ReportFormat,
) -> Delivered:
    _, lookup_key = settings.require_keys()
    keys, queries = SubjectKeys(kek_ring(settings), lookup_key), Queries(settings)

    async def ledger_call(fn: Callable[[Ledger], _T]) -> _T:
        return fn(ledger)

    async with await psycopg.AsyncConnection.connect(
        settings.require_database(), autocommit=True, row_factory=dict_row
    ) as conn:
        if subject_id is None:
            found = await queries.subject_by_digest(conn, tenant, keys.digest(tenant, _ref(ref)))
            if found == "erased":
                fail("this reference belonged to an erased subject; use --subject-id", code=1)
            if found is None:
                raise SubjectNotFound(tenant)
            subject_id = found
        requester = Requester(requested_by="staff", scope="cli")
        request = new_request(tenant, subject_id, requester, may_see_personal=True)
        return await generate(queries, conn, keys, ledger_call, request, fmt, producer="cli")


def _ref(ref: str | None) -> str:
    value = sys.stdin.readline().strip() if ref in (None, "-") else ref
    if not value:
        fail("no subject reference given (or use --subject-id)")
    return value


def subject_reports(
    code: TenantArg,
    allow: Annotated[
        bool,
        typer.Option(
            "--allow/--refuse",
            help="Let the tenant's portal (a producer key) request a subject's own report.",
        ),
    ],
) -> None:
    """Allow or refuse reports requested on the subject's behalf; recorded in the ledger."""
    changed = common.change_tenant(lambda ledger: ledger.set_subject_reports(code, allow=allow))
    policy = "staff and the subject's own requests" if allow else "staff only"
    typer.echo(f"tenant {code}: subject reports for {policy}" + ("" if changed else " (unchanged)"))


def register(app: typer.Typer) -> None:
    app.command()(report)
    admin.tenants.command("subject-reports")(subject_reports)
