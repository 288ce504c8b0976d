"""``ledger erase`` and ``ledger holds``: the erasure workflow from the command line.

A reference is personal data: pass ``-`` to read it from standard input instead of the
command line (which shells keep in history and ``ps`` shows to other users).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any
from uuid import UUID

import typer

from ledger.cli import common
from ledger.cli.common import fail
from ledger.domain.rules import InvalidEvent
from ledger.domain.subject import Subject
from ledger.wire.contract import subject_command

holds = typer.Typer(help="Legal holds: keep a subject's data despite erasure requests.")

TenantArg = Annotated[str, typer.Argument(help="Tenant code.")]
RefArg = Annotated[str, typer.Argument(help="The subject's upstream reference, or - for stdin.")]
HoldArg = Annotated[str, typer.Argument(help="The hold's own, non-personal reference.")]


def _reference(ref: str) -> str:
    value = sys.stdin.readline().strip() if ref == "-" else ref
    if not value:
        fail("no subject reference given")
    return value


def record_command(
    event_type: str, tenant: str, ref: str, event_id: str | None, /, **fields: Any
) -> list[Any]:
    """Records one command; returns the subject's events, newest last. A refusal is a
    message naming the rule's reason, and exit status 1."""
    try:
        command = subject_command(
            event_type,
            tenant=tenant,
            subject_ref=_reference(ref),
            producer="cli",
            event_id=event_id,
            **fields,
        )
    except InvalidEvent as exc:  # names the field, never its value
        fail(f"invalid ({exc.code}): {exc.detail}")
    ledger = common.ledger()
    try:
        outcome = ledger.record([command])[0]
        if outcome.status == "rejected":
            fail(f"refused ({outcome.reason}): {outcome.detail}", code=1)
        if outcome.status == "duplicate":
            typer.echo(f"already recorded: event {command.envelope.event_id}")
            raise typer.Exit(0)
        assert isinstance(outcome.aggregate_id, UUID)
        return ledger.subject_events(outcome.aggregate_id)
    finally:
        ledger.close()


def erase(
    tenant: TenantArg,
    ref: RefArg,
    reason: Annotated[str | None, typer.Option(help="Why (personal: stored sealed).")] = None,
    source: Annotated[str, typer.Option(help="How the request arrived.")] = "cli",
    event_id: Annotated[str | None, typer.Option(help="Your id; makes a retry safe.")] = None,
) -> None:
    """Record an erasure request: keys are shredded at once unless a legal hold refuses it."""
    last = record_command("ErasureRequested", tenant, ref, event_id, source=source, reason=reason)[
        -1
    ]
    if isinstance(last, Subject.ErasureRefused):
        fail(
            f"subject {last.originator_id}: erasure refused ({last.reason}: "
            f"{', '.join(last.hold_references)}); the refusal is recorded",
            code=3,
        )
    typer.echo(
        f"subject {last.originator_id}: erasure recorded and keys shredded "
        f"(event {last.event_id}); processors are notified next"
    )


@holds.command("place")
def place(
    tenant: TenantArg,
    ref: RefArg,
    hold_reference: HoldArg,
    note: Annotated[str | None, typer.Option(help="Why (personal: stored sealed).")] = None,
) -> None:
    """Place a legal hold: erasure requests are refused, with the reason, while it lasts."""
    last = record_command(
        "LegalHoldPlaced", tenant, ref, None, hold_reference=hold_reference, note=note
    )
    typer.echo(f"subject {last[-1].originator_id}: legal hold {hold_reference} placed")


@holds.command("release")
def release(tenant: TenantArg, ref: RefArg, hold_reference: HoldArg) -> None:
    """Release a legal hold placed under this reference."""
    last = record_command("LegalHoldReleased", tenant, ref, None, hold_reference=hold_reference)
    typer.echo(f"subject {last[-1].originator_id}: legal hold {hold_reference} released")


def register(app: typer.Typer) -> None:
    app.command()(erase)
    app.add_typer(holds, name="holds")
