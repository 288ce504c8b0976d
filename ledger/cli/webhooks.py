"""``ledger webhooks ...`` (the endpoint registry and the delivery record) and ``ledger notify``
(the process that sends erasure webhooks).

A signing secret is printed once, at ``add``, on stdout alone (so ``SECRET=$(ledger webhooks
add ...)`` works); the database keeps it only wrapped by the key-encryption key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import psycopg
import typer
from kafka.errors import KafkaError

from consumers.notifier import close_notifier, open_notifier, settings_kek
from ledger.cli import common
from ledger.cli.common import fail, kafka_refused, stop_on_signals
from ledger.domain.rules import UnknownTenant
from ledger.process.settings import ConfigError, Settings
from ledger.webhooks import endpoints, listing, signing
from ledger.webhooks.tables import create_tables

webhooks = typer.Typer(
    help="Erasure webhooks: where recipients and processors are told, and what was sent.",
    no_args_is_help=True,
)


@contextmanager
def _database(s: Settings) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection with the tables in place; a database error anywhere inside
    is a one-line message and exit code 2."""
    try:
        url = s.require_database()
    except ConfigError as exc:
        fail(str(exc))
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            create_tables(conn, s.database_schema)
            yield conn
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        fail(f"cannot use the database: {reason}")


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _check_tenant_registered(s: Settings, tenant: str) -> None:
    ledger = common.ledger(s)
    try:
        ledger.tenant(tenant)
    except UnknownTenant as exc:
        fail(exc.detail)
    finally:
        ledger.close()


@webhooks.command("add")
def add(
    tenant: Annotated[str, typer.Argument(help="Tenant code.")],
    name: Annotated[
        str,
        typer.Argument(help="The recipient exactly as disclosures name it, or a processor."),
    ],
    url: Annotated[str, typer.Argument(help="https://... (http:// for development only).")],
    processor: Annotated[
        bool, typer.Option("--processor", help="Tell it of every erasure of the tenant.")
    ] = False,
) -> None:
    """Register an endpoint and print its signing secret, once."""
    s = common.settings()
    try:
        kek = settings_kek(s)
        endpoints.check_tenant(tenant)
        url = endpoints.check_url(url)
    except (ConfigError, endpoints.InvalidEndpoint) as exc:
        fail(str(exc))
    _check_tenant_registered(s, tenant)
    kind = "processor" if processor else "recipient"
    with _database(s) as conn:
        try:
            secret = endpoints.add(
                conn, s.database_schema, kek, tenant=tenant, name=name, url=url, kind=kind
            )
        except endpoints.InvalidEndpoint as exc:
            fail(str(exc))
    _announce(tenant, name, kind, url)
    typer.echo(signing.secret_text(secret))


def _announce(tenant: str, name: str, kind: str, url: str) -> None:
    if endpoints.is_plain_http(url):
        typer.secho(
            "warning: this endpoint is plain http. Use https for production endpoints: the "
            "signature proves who sent a notice, but only TLS keeps it private.",
            err=True,
            fg=typer.colors.YELLOW,
        )
    typer.secho(
        f"registered {kind} endpoint {name!r} for tenant {tenant}. Its signing secret is "
        "shown only now; give it to the receiver, who verifies each request with a Standard "
        "Webhooks library (e.g. Python: standardwebhooks.Webhook(secret).verify(body, headers)):",
        err=True,
        fg=typer.colors.YELLOW,
    )


@webhooks.command("list")
def list_endpoints(
    tenant: Annotated[str | None, typer.Argument(help="Only this tenant's endpoints.")] = None,
) -> None:
    """List endpoints (never their secrets)."""
    s = common.settings()
    with _database(s) as conn:
        found = endpoints.list_endpoints(conn, s.database_schema, tenant)
    if not found:
        typer.echo("no webhook endpoints" + (f" for tenant {tenant}" if tenant else ""), err=True)
        return
    typer.echo("tenant\tname\tkind\tenabled\tcreated\turl")
    for e in found:
        enabled = "yes" if e.enabled else "no"
        typer.echo("\t".join((e.tenant, e.name, e.kind, enabled, _when(e.created_at), e.url)))


@webhooks.command("remove")
def remove(
    tenant: Annotated[str, typer.Argument(help="Tenant code.")],
    name: Annotated[str, typer.Argument(help="Endpoint name, as `list` shows it.")],
) -> None:
    """Remove an endpoint. Its pending deliveries end as no_endpoint."""
    s = common.settings()
    with _database(s) as conn:
        if not endpoints.remove(conn, s.database_schema, tenant, name):
            fail(f"tenant {tenant} has no endpoint named {name!r}", code=1)
    typer.echo(f"removed endpoint {name!r} of tenant {tenant}")


def _set_enabled(tenant: str, name: str, enabled: bool) -> None:
    s = common.settings()
    with _database(s) as conn:
        if not endpoints.set_enabled(conn, s.database_schema, tenant, name, enabled):
            fail(f"tenant {tenant} has no endpoint named {name!r}", code=1)
    typer.echo(f"{'enabled' if enabled else 'disabled'} endpoint {name!r} of tenant {tenant}")


@webhooks.command("disable")
def disable(
    tenant: Annotated[str, typer.Argument(help="Tenant code.")],
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
) -> None:
    """Stop sending to an endpoint; its pending deliveries end as no_endpoint."""
    _set_enabled(tenant, name, False)


@webhooks.command("enable")
def enable(
    tenant: Annotated[str, typer.Argument(help="Tenant code.")],
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
) -> None:
    """Send to a disabled endpoint again (erasures planned from now on)."""
    _set_enabled(tenant, name, True)


@webhooks.command("deliveries")
def deliveries(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's deliveries.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 200,
) -> None:
    """Erasure notices, newest first: status, attempts, last HTTP status, and whether the
    ledger has recorded the request's ProcessorsNotified."""
    s = common.settings()
    with _database(s) as conn:
        rows = listing.deliveries(conn, s.database_schema, tenant=tenant, limit=limit)
    if not rows:
        typer.echo("no deliveries" + (f" for tenant {tenant}" if tenant else ""), err=True)
        return
    typer.echo(
        "delivery_id\ttenant\tsubject_id\trecipient\tstatus\tattempts\tlast_code\tnext_attempt"
        "\tsettled\tin_ledger"
    )
    for r in rows:
        columns = (str(r.delivery_id), r.tenant, str(r.subject_id), r.recipient, r.status)
        code = "-" if r.last_status_code is None else str(r.last_status_code)
        times = (_when(r.next_attempt_at), _when(r.settled_at), _when(r.recorded_at))
        typer.echo("\t".join((*columns, str(r.attempts), code, *times)))


@webhooks.command("attempts")
def attempts(
    delivery_id: Annotated[str, typer.Argument(help="A delivery id, as `deliveries` shows.")],
) -> None:
    """Every attempt of one delivery: when, HTTP status or error class, duration."""
    try:
        wanted = UUID(delivery_id)
    except ValueError:
        fail("that is not a delivery id (a UUID)")
    s = common.settings()
    with _database(s) as conn:
        rows = listing.attempts(conn, s.database_schema, wanted)
    if not rows:
        typer.echo(f"no attempts for delivery {wanted}", err=True)
        return
    typer.echo("attempt\tat\tstatus_code\terror\tms")
    for a in rows:
        code = "-" if a.status_code is None else str(a.status_code)
        ms = "interrupted" if a.duration_ms is None else str(a.duration_ms)
        typer.echo("\t".join((str(a.attempt), _when(a.at), code, a.error or "-", ms)))


def notify() -> None:
    """Send erasure webhooks (ledger topic → recipients and processors). Stops on Ctrl-C."""
    s = common.settings()
    stop = stop_on_signals(s.shutdown_grace)
    common.wait_until_kafka_admits(s, stop)
    ledger = common.ledger(s)
    try:
        notifier = open_notifier(s, ledger)
    except ConfigError as exc:
        ledger.close()
        fail(str(exc))
    except common.DATABASE_DOWN as exc:
        ledger.close()
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")
    except KafkaError as exc:
        ledger.close()
        fail(kafka_refused(s.require_kafka(), exc))
    try:
        notifier.run(stop)
    finally:
        close_notifier(notifier)
        ledger.close()


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks, name="webhooks")
    app.command()(notify)
