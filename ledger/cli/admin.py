"""``ledger tenants ...`` and ``ledger keys generate``: operator tasks."""

from __future__ import annotations

import base64
from typing import Annotated
from uuid import UUID

import typer
from eventsourcing.utils import get_topic

from ledger.cli import common
from ledger.cli.common import fail
from ledger.domain.rules import RuleViolation
from ledger.domain.tenant import Tenant
from ledger.integrity.checkpoints import new_private_key
from ledger.keys.crypto import new_secret

tenants = typer.Typer(help="Register and list tenants (data controllers).", no_args_is_help=True)
keys = typer.Typer(help="Key material for configuration.", no_args_is_help=True)


@tenants.command("add")
def add_tenant(
    code: Annotated[str, typer.Argument(help="Tenant code: lower-case letters, digits, - and _.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    allow_plaintext_ingest: Annotated[
        bool,
        typer.Option(
            "--allow-plaintext-ingest",
            help="Accept personal fields in clear on the ingest topic (default: only sealed).",
        ),
    ] = False,
) -> None:
    """Register a tenant, so the ledger accepts its events."""
    ledger = common.ledger()
    try:
        tenant = ledger.register_tenant(code, name, allow_plaintext_ingest=allow_plaintext_ingest)
    except RuleViolation as exc:
        fail(exc.detail, code=1)
    finally:
        ledger.close()
    typer.echo(
        f"registered tenant {tenant.code} ({tenant.name}), id {tenant.id}; "
        f"personal fields on the ingest topic: {_policy(tenant)}"
    )


@tenants.command("plaintext-ingest")
def plaintext_ingest(
    code: Annotated[str, typer.Argument(help="Tenant code.")],
    allow: Annotated[
        bool,
        typer.Option(
            "--allow/--refuse",
            help="Accept personal fields in clear on the ingest topic, or only sealed ones.",
        ),
    ],
) -> None:
    """Allow or refuse personal fields in clear on the ingest topic; recorded in the ledger."""
    changed = common.change_tenant(
        lambda ledger: ledger.set_ingest_policy(code, allow_plaintext_ingest=allow)
    )
    policy = "sealed or in clear" if allow else "sealed only"
    typer.echo(
        f"tenant {code}: personal fields on the ingest topic {policy}"
        + ("" if changed else " (unchanged)")
    )


@tenants.command("list")
def list_tenants() -> None:
    """List registered tenants and their purposes."""
    ledger = common.ledger()
    topic = get_topic(Tenant.Registered)
    try:
        registered = ledger.store.select_notifications(1, 100_000, topics=[topic])
        for notification in registered:
            tenant: Tenant = ledger.repository.get(UUID(str(notification.originator_id)))
            purposes = ", ".join(sorted(tenant.purposes)) or "no purposes yet"
            typer.echo(f"{tenant.code}\t{tenant.name}\t{_policy(tenant)}\t{purposes}")
    finally:
        ledger.close()


def _policy(tenant: Tenant) -> str:
    return "sealed or in clear" if tenant.allow_plaintext_ingest else "sealed only"


@keys.command("generate")
def generate_keys() -> None:
    """Print a fresh key-encryption key, lookup key, checkpoint signing key and documents key
    as environment assignments. Only the relay needs LEDGER_CHECKPOINT_KEY (it signs
    checkpoints): keep it apart from the KEK, in a secret of its own that no other process is
    given, since whoever holds it and the database could sign a rewritten history. The API
    needs LEDGER_DOCUMENT_KEY (it signs receipts and certificates)."""
    made = {
        "LEDGER_KEK": new_secret(),
        "LEDGER_LOOKUP_KEY": new_secret(),
        "LEDGER_CHECKPOINT_KEY": new_private_key(),
        "LEDGER_DOCUMENT_KEY": new_private_key(),
    }
    for name, key in made.items():
        typer.echo(f"{name}={base64.b64encode(key).decode()}")


def register(app: typer.Typer) -> None:
    app.add_typer(tenants, name="tenants")
    app.add_typer(keys, name="keys")
