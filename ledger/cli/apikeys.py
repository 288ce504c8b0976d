"""``ledger apikeys create|list|revoke``: keys for the HTTP query API.

A token is printed once, at creation, on stdout alone (so ``TOKEN=$(ledger apikeys create
...)`` works); the database keeps only its hash, so it can never be shown again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
import typer

from ledger.cli import common
from ledger.cli.common import fail
from ledger.process.settings import ConfigError
from projections.api import access

apikeys = typer.Typer(
    help="API keys for the query API: each belongs to one tenant and has scopes.",
    no_args_is_help=True,
)
_SCOPES = ", ".join(s.value for s in access.Scope)


@contextmanager
def _database() -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """An autocommit connection with the key table in place, and the schema; a database
    error anywhere inside is a one-line message and exit code 2."""
    loaded = common.settings()
    try:
        url = loaded.require_database()
    except ConfigError as exc:
        fail(str(exc))
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            access.create_table(conn, loaded.database_schema)
            yield conn, loaded.database_schema
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        fail(f"cannot use the database: {reason}")


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _scope_names(scopes: frozenset[access.Scope]) -> str:
    return ",".join(s.value for s in access.Scope if s in scopes)


@apikeys.command("create")
def create(
    tenant: Annotated[str, typer.Argument(help="Tenant code the key speaks for.")],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", "-s", help=f"One of {_SCOPES}; repeat for several."),
    ] = None,
    label: Annotated[
        str, typer.Option(help="What the key is for (no personal data), e.g. 'crm-sync'.")
    ] = "",
) -> None:
    """Create a key and print its token, once."""
    try:
        scopes = access.parse_scopes(scope or [])
        access.check_tenant(tenant)
    except access.InvalidKeyRequest as exc:
        fail(str(exc))
    with _database() as (conn, schema):
        try:
            token, info = access.create_key(conn, schema, tenant, scopes, label)
        except access.InvalidKeyRequest as exc:
            fail(str(exc))
    typer.secho(
        f"created API key {info.key_id} for tenant {info.tenant} "
        f"(scopes: {_scope_names(info.scopes)}). The token below is shown only now and "
        "cannot be shown again; store it in a secret manager:",
        err=True,
        fg=typer.colors.YELLOW,
    )
    typer.echo(token)


@apikeys.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
) -> None:
    """List keys (never their tokens): id, tenant, scopes, label, created, revoked."""
    with _database() as (conn, schema):
        keys = access.list_keys(conn, schema, tenant)
    if not keys:
        typer.echo("no API keys" + (f" for tenant {tenant}" if tenant else ""), err=True)
        return
    typer.echo("key_id\ttenant\tscopes\tlabel\tcreated\trevoked")
    for key in keys:
        columns = (key.key_id, key.tenant, _scope_names(key.scopes), key.label or "-")
        typer.echo("\t".join((*columns, _when(key.created_at), _when(key.revoked_at))))


@apikeys.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The 12-hex-digit key id `list` shows.")],
) -> None:
    """Revoke a key for good. API servers stop accepting it within their cache time."""
    if not access.KEY_ID.match(key_id):
        # Not echoed: an operator may have pasted a whole token by mistake.
        fail("that is not a key id: give the 12 lower-case hex digits `list` shows")
    with _database() as (conn, schema):
        revoked = access.revoke_key(conn, schema, key_id)
    if not revoked:
        fail(f"no active API key {key_id} (unknown, or already revoked)", code=1)
    typer.echo(
        f"revoked API key {key_id}; API servers refuse it within "
        f"{access.DEFAULT_CACHE_TTL:g} s (their key cache)"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(apikeys, name="apikeys")
