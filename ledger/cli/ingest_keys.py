"""``ledger ingest-keys show|list|rotate|destroy-expired``: the key pairs of sealed ingest.

``show`` prints what a tenant's producers need (the JSON ``GET /v1/ingest-key`` answers), for
teams that configure producers out of band. No command ever prints a private key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer

from ledger.application.service import Ledger
from ledger.cli import common
from ledger.cli.common import DATABASE_DOWN, fail
from ledger.domain.values import TENANT_CODE
from ledger.keys.ingest_keys import IngestKeyRow

ingest_keys = typer.Typer(
    help="Ingest key pairs: producers seal personal fields to the current public key.",
    no_args_is_help=True,
)
T = TypeVar("T")


def _with_ledger(action: Callable[[Ledger], T]) -> T:
    ledger = common.ledger()
    try:
        return action(ledger)
    except DATABASE_DOWN as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")
    finally:
        ledger.close()


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@ingest_keys.command("show")
def show(
    tenant: Annotated[str, typer.Option(help="Tenant whose producers will seal.")],
) -> None:
    """Print a tenant's ingest key document, as GET /v1/ingest-key answers it (JSON)."""
    if not TENANT_CODE.match(tenant):
        fail("--tenant must be a tenant code: lower-case letters, digits, - and _")
    document = _with_ledger(lambda ledger: ledger.ingest_keys.document_for(tenant))
    typer.echo(json.dumps(document, indent=2))


@ingest_keys.command("list")
def list_keys() -> None:
    """List the ingest key pairs: current, retired (still open messages) and destroyed."""
    rows = _with_ledger(lambda ledger: ledger.ingest_keys.key_pairs())
    if not rows:
        typer.echo("no ingest key yet (`ledger ingest-keys show` makes the first)")
    typer.echo("key id\tstate\tcreated\tretired\tdestroyed")
    for row in rows:
        typer.echo(
            f"{row.key_id}\t{row.state}\t{_when(row.created_at)}\t"
            f"{_when(row.retired_at)}\t{_when(row.destroyed_at)}"
        )


@ingest_keys.command("rotate")
def rotate() -> None:
    """Make a new current key pair; the previous one is retired and still opens messages."""

    def action(ledger: Ledger) -> tuple[IngestKeyRow, list[IngestKeyRow]]:
        ledger.ingest_keys.current()  # a first key, so that there is one to retire
        new = ledger.ingest_keys.rotate()
        retired = [r for r in ledger.ingest_keys.key_pairs() if r.state == "retired"]
        return new, retired

    new, retired = _with_ledger(action)
    typer.echo(f"current ingest key: {new.key_id}")
    retention = common.settings().ingest_retention
    for row in retired:
        assert row.retired_at is not None
        until = _when(row.retired_at + retention)
        typer.echo(f"retired: {row.key_id} (opens messages until {until}, then destroyed)")


@ingest_keys.command("destroy-expired")
def destroy_expired() -> None:
    """Destroy the private keys retired longer ago than LEDGER_INGEST_RETENTION."""
    destroyed = _with_ledger(lambda ledger: ledger.ingest_keys.destroy_expired())
    typer.echo("destroyed: " + (", ".join(destroyed) if destroyed else "none due"))


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_keys, name="ingest-keys")
