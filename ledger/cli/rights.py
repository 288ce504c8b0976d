"""``ledger rights``: rectification (GDPR art. 16), restriction of processing (art. 18) and
objection (art. 21).

Each command records the fact a producer would send over Kafka, as ``cli``. A reference is
personal data: pass ``-`` to read it from standard input instead of the command line. A
corrected value is personal data too, and is always read from standard input (after the
reference, when that comes from there as well).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ledger.cli.common import fail
from ledger.cli.erasure import RefArg, TenantArg, record_command
from ledger.domain.rights import RESTRICTION_GROUNDS
from ledger.domain.subject import Subject

rights = typer.Typer(
    help="Rectification (art. 16), restriction of processing (art. 18) and objection (art. 21)."
)

ReferenceArg = Annotated[
    str, typer.Argument(help="The restriction's own, non-personal reference (a case number).")
]
PurposeArg = Annotated[str, typer.Argument(help="Purpose code.")]
Source = Annotated[str, typer.Option(help="How the request arrived.")]
Note = Annotated[str | None, typer.Option(help="A note (personal: stored sealed).")]
EventId = Annotated[str | None, typer.Option(help="Your id; makes a retry safe.")]


@rights.command("rectify")
def rectify(
    tenant: TenantArg,
    ref: RefArg,
    corrects_event_id: Annotated[str, typer.Argument(help="The event whose field is corrected.")],
    field: Annotated[
        str,
        typer.Argument(help="ip_address, user_agent, evidence, description or note."),
    ],
    source: Source = "cli",
    reason: Annotated[str | None, typer.Option(help="Why (personal: stored sealed).")] = None,
    event_id: EventId = None,
) -> None:
    """Correct a personal field of one of the subject's events; the new value is read from
    standard input."""
    if ref == "-":
        ref = sys.stdin.readline().strip()  # the reference first, then the value
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        fail("no corrected value on standard input")
    events = record_command(
        "PersonalDataRectified",
        tenant,
        ref,
        event_id,
        corrects_event_id=corrects_event_id,
        field=field,
        value=value,
        source=source,
        reason=reason,
    )
    fixed = [e for e in events if isinstance(e, Subject.PersonalDataRectified)][-1]
    typer.echo(
        f"subject {fixed.originator_id}: {field} of {corrects_event_id} corrected "
        f"(event {fixed.event_id}); recipients are told next"
    )


@rights.command("restrict")
def restrict(
    tenant: TenantArg,
    ref: RefArg,
    restriction_reference: ReferenceArg,
    grounds: Annotated[
        str, typer.Option(help=f"Art. 18(1): {', '.join(sorted(RESTRICTION_GROUNDS))}.")
    ],
    purpose: Annotated[
        list[str] | None,
        typer.Option(help="A purpose it covers (repeat the option); none: every purpose."),
    ] = None,
    source: Source = "cli",
    note: Note = None,
    event_id: EventId = None,
) -> None:
    """Restrict processing: purpose checks refuse what it covers until it is lifted."""
    events = record_command(
        "ProcessingRestricted",
        tenant,
        ref,
        event_id,
        restriction_reference=restriction_reference,
        grounds=grounds,
        purposes=purpose or [],
        source=source,
        note=note,
    )
    covers = ", ".join(purpose) if purpose else "every purpose"
    typer.echo(
        f"subject {events[-1].originator_id}: processing restricted under "
        f"{restriction_reference} ({covers})"
    )


@rights.command("lift")
def lift(
    tenant: TenantArg,
    ref: RefArg,
    restriction_reference: ReferenceArg,
    source: Source = "cli",
    note: Note = None,
) -> None:
    """Lift a restriction (tell the subject first: art. 18(3))."""
    events = record_command(
        "RestrictionLifted",
        tenant,
        ref,
        None,
        restriction_reference=restriction_reference,
        source=source,
        note=note,
    )
    typer.echo(f"subject {events[-1].originator_id}: restriction {restriction_reference} lifted")


@rights.command("object")
def object_to(
    tenant: TenantArg,
    ref: RefArg,
    purpose: PurposeArg,
    reason: Annotated[str | None, typer.Option(help="The subject's grounds (personal).")] = None,
    source: Source = "cli",
    event_id: EventId = None,
) -> None:
    """Record the subject's objection to a purpose (legitimate interests, public task, or
    direct marketing): purpose checks answer ``objected``."""
    events = record_command(
        "ObjectionRaised", tenant, ref, event_id, purpose=purpose, source=source, reason=reason
    )
    typer.echo(f"subject {events[-1].originator_id}: objection to {purpose} recorded")


@rights.command("grounds")
def grounds(
    tenant: TenantArg,
    ref: RefArg,
    purpose: PurposeArg,
    grounds_reference: Annotated[
        str, typer.Argument(help="Your own, non-personal reference for the assessment.")
    ],
    reasoning: Annotated[
        str, typer.Option(help="Why the grounds override the objection (personal).")
    ],
) -> None:
    """Record compelling legitimate grounds that override a standing objection (never one to
    direct marketing)."""
    events = record_command(
        "CompellingGroundsRecorded",
        tenant,
        ref,
        None,
        purpose=purpose,
        grounds_reference=grounds_reference,
        reasoning=reasoning,
    )
    typer.echo(
        f"subject {events[-1].originator_id}: compelling grounds {grounds_reference} "
        f"override the objection to {purpose}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(rights, name="rights")
